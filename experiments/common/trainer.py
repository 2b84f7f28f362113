"""The one training loop shared by every experiment."""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from experiments.common.checkpoint import (
    TrainState,
    load_best,
    read_last,
    save_best,
    save_last,
    skip_batches,
    start_state,
)
from experiments.common.compile_guard import (
    RTOL,
    CompileFallbackWarning,
    CompileMismatchError,
    RestorePoint,
    StepOutcome,
    compare,
    failure_reason,
    forward_backward,
    gradient_vector,
)
from experiments.common.config import compile_setting, tf32_setting
from experiments.common.loggers import RunningMeans, build_logger
from experiments.common.precision import tf32_matmuls
from experiments.common.runtime import (
    command_line,
    flush_denormal,
    git_commit,
    hardware,
    process_seconds,
    resolve_device,
    seed_everything,
)
from experiments.common.task import Task

METRICS_FILE = "metrics.json"
GUARD_MODES = ("fallback", "strict")  # TrainStep's guard: warn and continue eagerly, or raise


def output_dir() -> Path:
    """Hydra's output folder for this run, or the working directory outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def _evaluate(task: Task, split: str) -> dict[str, float]:
    module = task.module()
    was_training = module.training
    module.eval()
    with torch.no_grad():
        metrics = {k: float(v) for k, v in task.evaluate(split).items()}
    module.train(was_training)
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite {split} metrics: {', '.join(bad)}")
    return metrics


def train_step(task: Task, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None, batch: Any, step: int,
               grad_clip: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One eager optimisation step (:class:`TrainStep` without compilation). Returns the loss and the logs."""
    return TrainStep(task, module, optimizer, scheduler, grad_clip)(batch, step)


def compile_guard(value: Any) -> str:
    """The guard of a compiled run (:class:`TrainStep`): ``trainer.compile=true`` fails loudly when the first compiled
    step raises or differs from the eager step (``strict``), ``auto`` warns and continues eagerly (``fallback``)."""
    return "strict" if compile_setting(value) == "true" else "fallback"


def use_compile(value: Any, device: torch.device) -> bool:
    """Whether to compile the training step: ``auto`` compiles on CUDA only (on CPU the compiled step is not
    reliably faster, see results/bench/), ``true``/``false`` force it."""
    setting = compile_setting(value)
    return device.type == "cuda" if setting == "auto" else setting == "true"


def _dynamo_counts() -> dict[str, int]:
    """Process-wide torch._dynamo counters: frames compiled (a frame compiled again after a guard failure counts
    again) and graphs captured."""
    from torch._dynamo.utils import counters

    return {"frames": int(counters["frames"]["ok"]), "graphs": int(counters["stats"]["unique_graphs"])}


class TrainStep:
    """One optimisation step exactly as :func:`fit` takes it (no host sync): zero_grad, ``task.training_step``,
    backward, optional global-norm clipping, optimizer and scheduler steps; returns the loss and the logs.

    With ``compiled``, ``task.training_step`` (forward, estimator, loss) runs under ``torch.compile``; its backward
    is compiled with it (AOTAutograd). On CUDA the mode is ``reduce-overhead`` (CUDA graphs: one launch for the
    forward, one for the backward); the returned scalars are then copied out of the graphs' memory in one stacked
    kernel, because the next replay overwrites them. On every device Inductor runs with ``fallback_random``, so that
    the noise comes from torch's generator as in eager mode and a compiled step reproduces an eager one (to float
    rounding). The optimizer step stays eager (fused Adam on CUDA: a few launches). :attr:`counts` gives the compiled
    frames, graphs and recompiles since construction.

    ``guard`` (:data:`GUARD_MODES`, or None for no check) checks the first compiled step against an eager step on the
    same batch, parameters and noise (:mod:`experiments.common.compile_guard`): the eager step runs first and
    everything it changed (module state, random generators, gradients) is put back, so the run continues exactly as
    an unguarded one. When compiling raises or the two steps differ by more than ``rtol``, ``"fallback"`` warns once
    (:class:`CompileFallbackWarning`), takes this step and all later ones eagerly and keeps the reason in
    :attr:`fallback`; ``"strict"`` raises :class:`CompileMismatchError`. :attr:`check` holds the measured
    differences of a check that passed. Later steps cost nothing more.
    """

    def __init__(self, task: Task, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, grad_clip: float | None = None,
                 compiled: bool = False, device: torch.device | None = None, guard: str | None = None,
                 rtol: float = RTOL) -> None:
        if guard is not None and guard not in GUARD_MODES:
            raise ValueError(f"guard must be None or one of {', '.join(GUARD_MODES)}, got {guard!r}")
        self.task, self.module, self.optimizer, self.scheduler = task, module, optimizer, scheduler
        self.grad_clip = float(grad_clip) if grad_clip else None
        self.compiled = bool(compiled)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cudagraphs = self.compiled and self.device.type == "cuda"
        self.guard, self.rtol = guard, float(rtol)
        self.check: dict[str, float] | None = None
        self.fallback: str | None = None
        self._forward = compile_step(task.training_step, self.cudagraphs) if self.compiled else task.training_step
        self._counts0 = _dynamo_counts() if self.compiled else None
        self._counts1: dict[str, int] | None = None

    @property
    def counts(self) -> dict[str, int]:
        """``frames``/``graphs``: compiled since this step was built; ``recompiles``: frames compiled after the
        first step (guard failures: a new shape, a value the graph had specialised on). Zeros when eager."""
        if self._counts0 is None or self._counts1 is None:
            return {"frames": 0, "graphs": 0, "recompiles": 0}
        now = _dynamo_counts()
        return {"frames": now["frames"] - self._counts0["frames"], "graphs": now["graphs"] - self._counts0["graphs"],
                "recompiles": now["frames"] - self._counts1["frames"]}

    def __call__(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.compiled and self.guard is not None and self.check is None:
            out = self._checked_forward_backward(batch, step)
        else:
            out = self._forward_backward(batch, step)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return out

    def _forward_backward(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """zero_grad, the (compiled or eager) forward and its backward: the loss and the logs."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss, logs = self._forward(batch, step)
        out = _copy_out(loss, logs) if self.cudagraphs else (loss, logs)
        loss.backward()
        if self.compiled and self._counts1 is None:
            self._counts1 = _dynamo_counts()  # everything compiled so far belongs to the first step
        return out

    def _checked_forward_backward(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The first compiled forward and backward, checked against an eager one (``task.eager_twin_step``) taken
        from the same restore point; falls back (or fails) on an exception or a mismatch."""
        point = RestorePoint(self.module, self.device)
        eager = forward_backward(self.task.eager_twin_step, self.module, batch, step)
        point.restore()
        try:
            loss, logs = self._forward_backward(batch, step)
        except Exception as error:  # noqa: BLE001 - any failure of the compiled path is the guard's business
            return self._fall_back(failure_reason(error), point, batch, step, error)
        stats, reason = compare(eager, StepOutcome(loss, logs, gradient_vector(self.module)), self.rtol)
        if reason is not None:
            return self._fall_back(reason, point, batch, step, None)
        self.check = stats
        return loss, logs

    def _fall_back(self, reason: str, point: RestorePoint, batch: Any, step: int,
                   error: BaseException | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``strict``: raise naming ``reason``. ``fallback``: warn once, restore ``point``, run eagerly from now on
        and take this step's forward and backward eagerly."""
        if self.guard == "strict":
            raise CompileMismatchError(f"trainer.compile=true: {reason} (trainer.compile=auto would warn and continue "
                                       f"eagerly; trainer.compile=false does not compile)") from error
        warnings.warn(f"trainer.compile: {reason}; the run continues eagerly (recorded in metrics.json as "
                      f"\"compile\": \"fell back: ...\")", CompileFallbackWarning, stacklevel=3)
        point.restore()
        self.fallback = reason
        self.compiled = self.cudagraphs = False
        self._forward = self.task.training_step
        return self._forward_backward(batch, step)


def compile_step(forward: Callable[[Any, int], tuple[torch.Tensor, dict[str, torch.Tensor]]],
                 cudagraphs: bool) -> Callable[[Any, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """``torch.compile(forward)``: with CUDA graphs (``reduce-overhead``'s option) when ``cudagraphs``, and with
    ``fallback_random`` always (random numbers from torch's generator, in program order, as in eager mode)."""
    options: dict[str, Any] = {"fallback_random": True}
    if cudagraphs:
        options["triton.cudagraphs"] = True  # what mode="reduce-overhead" sets (mode and options are exclusive)
    return torch.compile(forward, options=options)


def _copy_out(loss: torch.Tensor, logs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalars out of CUDA-graph memory (detached): one stack (one kernel), then views of the copy."""
    values = torch.stack([loss.detach().float().reshape(()), *(v.detach().float().reshape(()) for v in logs.values())])
    parts = values.unbind(0)
    return parts[0], dict(zip(logs, parts[1:], strict=True))


def batch_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for ``task.train_batches`` seeded from the run's seed and ``step``. :func:`fit` uses
    ``step=0`` and, on resume, skips the batches already trained on (``checkpoint.skip_batches``), so that a
    resumed run continues the interrupted run's data order."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) * 1_000_003 + int(step))
    return generator


def _improved(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def fit(cfg: DictConfig, task_factory: Callable[[DictConfig, torch.device], Task],
        out_dir: Path | None = None) -> dict[str, float]:
    """Train ``task_factory(cfg, device)`` for ``cfg.trainer.max_steps`` steps and return its test metrics.

    Seeds everything, resolves the device, evaluates on validation every ``trainer.eval_every`` steps, keeps
    ``best.pt`` (by ``task.monitor``) and ``last.pt``, resumes from ``last.pt`` when restarted in the same
    folder, evaluates the best weights on test and writes ``metrics.json``. With ``trainer.flush_denormal``
    (default true) CPU arithmetic treats subnormal floats as zero for the whole run (see
    :func:`experiments.common.runtime.flush_denormal`); the setting is restored afterwards. ``trainer.compile``
    (auto: CUDA only) compiles the training step (:class:`TrainStep`; its first step is checked against an eager
    one: ``auto`` falls back to eager mode with a warning when they differ or compiling fails, ``true`` raises),
    ``trainer.tf32`` (default true) lets CUDA
    matmuls use TF32 during the run (``emulate``: TF32's rounding on any device, eagerly; see
    :mod:`experiments.common.precision`), and ``trainer.max_minutes`` bounds this call's wall time: when it runs out,
    ``last.pt`` and a ``metrics.json`` with ``"finished": false`` are written (no test evaluation) and the function
    returns the best validation metrics so far; calling it again in the same folder resumes (docs/gpu.md).
    """
    with flush_denormal(bool(cfg.trainer.get("flush_denormal", True))), \
            tf32_matmuls(cfg.trainer.get("tf32", True), resolve_device(str(cfg.device))):
        return _fit(cfg, task_factory, out_dir)


def _fit(cfg: DictConfig, task_factory: Callable[[DictConfig, torch.device], Task],
         out_dir: Path | None) -> dict[str, float]:
    out_dir = Path(out_dir) if out_dir is not None else output_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg.trainer
    max_steps, eval_every = int(tcfg.max_steps), int(tcfg.eval_every)
    log_every = max(1, int(tcfg.get("log_every", 50)))
    grad_clip = tcfg.get("grad_clip")
    loss_limit = float(tcfg.get("loss_limit") or math.inf)

    deadline = _deadline(tcfg.get("max_minutes"))
    commit = git_commit()  # at start: the code that trains, even if the tree changes during a long run
    ckpt = read_last(out_dir, cfg) if tcfg.get("resume", True) else None  # refuses a bad resume before any work
    seed_everything(int(cfg.seed))
    device = resolve_device(str(cfg.device))
    task = task_factory(cfg, device)
    if task.monitor_mode not in ("min", "max"):
        raise ValueError(f"task.monitor_mode must be 'min' or 'max', got {task.monitor_mode!r}")
    module = task.module().to(device)
    optimizer, scheduler = task.configure_optimizers()

    state = start_state(ckpt, cfg, out_dir, module, optimizer, scheduler)
    del ckpt
    logger = build_logger(cfg, out_dir, run_id=state.logger_run_id)
    state.logger_run_id = getattr(logger, "run_id", None)

    emulated = tf32_setting(tcfg.get("tf32", True)) == "emulate"  # a dispatch mode: eager only
    compile_value = tcfg.get("compile", "auto")
    step_fn = TrainStep(task, module, optimizer, scheduler, grad_clip,
                        compiled=use_compile(compile_value, device) and not emulated, device=device,
                        guard=compile_guard(compile_value))
    batches = skip_batches(iter(task.train_batches(batch_generator(int(cfg.seed), 0, device))), state.step, device)
    meter = RunningMeans()
    t_start = time.perf_counter()
    elapsed_before = state.elapsed_s
    bar = tqdm(total=max_steps, initial=state.step, disable=not tcfg.get("progress", True),
               desc=f"{cfg.experiment.name}/{cfg.relaxation.name}/{cfg.estimator.name}", dynamic_ncols=True)
    try:
        module.train()
        while state.step < max_steps:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            loss, logs = step_fn(next(batches), state.step)
            state.step += 1
            meter.add({"train/loss": loss, **logs})
            bar.update(1)
            if state.step % log_every == 0 or state.step == max_steps:
                means = meter.pop()  # one host sync per log_every steps
                if not math.isfinite(means["train/loss"]) or abs(means["train/loss"]) > loss_limit:
                    raise FloatingPointError(
                        f"training loss {means['train/loss']:.4g} at step {state.step} is non-finite or beyond "
                        f"trainer.loss_limit={loss_limit:g}: the run diverged; the last good checkpoint is "
                        f"{out_dir / 'last.pt'} (lower the learning rate, clip gradients or check the temperature)"
                    )
                if step_fn.compiled:
                    means["compile/recompiles"] = float(step_fn.counts["recompiles"])
                logger.log(means, state.step)
                bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in list(means.items())[:3]})
            if state.step % eval_every == 0 or state.step == max_steps:
                valid = _evaluate(task, "valid")
                if task.monitor not in valid:
                    raise KeyError(f"task.monitor={task.monitor!r} is not among the validation metrics {sorted(valid)}")
                if _improved(valid[task.monitor], state.best_value, task.monitor_mode):
                    state.best_value, state.best_step, state.best_metrics = valid[task.monitor], state.step, valid
                    save_best(out_dir, module, state.step, valid)
                state.elapsed_s = elapsed_before + time.perf_counter() - t_start
                logger.log(valid, state.step)
                save_last(out_dir, state, module, optimizer, scheduler)
    except KeyboardInterrupt:
        state.elapsed_s = elapsed_before + time.perf_counter() - t_start
        save_last(out_dir, state, module, optimizer, scheduler)
        logger.finish()
        # the fact only: under Hydra, experiments.common.errors.user_errors prints the command that resumes
        print(f"[sst] interrupted at step {state.step}; saved {out_dir / 'last.pt'}", file=sys.stderr)
        raise
    finally:
        bar.close()
    train_time = time.perf_counter() - t_start
    state.elapsed_s = elapsed_before + train_time
    if state.step < max_steps:  # out of trainer.max_minutes
        return _stop_unfinished(cfg, task, state, module, optimizer, scheduler, logger, out_dir, device, commit,
                                count_rate(state, train_time, elapsed_before), step_fn)

    load_best(out_dir, module)
    test = _evaluate(task, "test")
    task.save_artifacts(out_dir)
    metrics = {**test, **_best_metrics(state), "train/steps_per_s": count_rate(state, train_time, elapsed_before)}
    _write_metrics(cfg, task, metrics, device, state, commit, step_fn, out_dir, finished=True)
    logger.log(test, state.step)
    logger.finish()
    return metrics


def _deadline(max_minutes: Any) -> float | None:
    """``time.perf_counter()`` at which this call's ``trainer.max_minutes`` (counted from the start of
    :func:`fit`: set-up, compilation and evaluations included) runs out; None without a budget."""
    if max_minutes is None:
        return None
    minutes = float(max_minutes)
    if not minutes > 0:
        raise ValueError(f"trainer.max_minutes must be null (no budget) or > 0, got {max_minutes!r}")
    return time.perf_counter() + 60.0 * minutes


def _compile_record(step_fn: TrainStep) -> dict[str, Any] | str:
    """The record's ``compile`` entry: whether the step was compiled, in which mode, dynamo's counts and the first
    step's check against eager (``check``: its relative differences, when it ran); ``"fell back: <reason>"`` when
    the guard switched the run to eager mode."""
    if step_fn.fallback is not None:
        return f"fell back: {step_fn.fallback}"
    mode = ("reduce-overhead" if step_fn.cudagraphs else "default") if step_fn.compiled else None
    record: dict[str, Any] = {"enabled": step_fn.compiled, "mode": mode, **step_fn.counts}
    if step_fn.check is not None:
        record["check"] = step_fn.check
    return record


def _best_metrics(state: TrainState) -> dict[str, float]:
    """The best validation metrics as ``best/<key>``, and ``best/step`` when there was a validation."""
    best: dict[str, float] = {f"best/{k}": v for k, v in state.best_metrics.items()}
    if state.best_step is not None:
        best["best/step"] = state.best_step
    return best


def _write_metrics(cfg: DictConfig, task: Task, metrics: dict[str, float], device: torch.device, state: TrainState,
                   commit: str | None, step_fn: TrainStep, out_dir: Path, finished: bool) -> None:
    """``metrics.json``: the run's record (:func:`build_record`) with ``finished``, the step reached and the
    compile entry (:func:`_compile_record`)."""
    record = build_record(cfg, task, metrics, device, state.elapsed_s, commit=commit)
    record.update(finished=finished, step=state.step, compile=_compile_record(step_fn))
    (out_dir / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _stop_unfinished(cfg: DictConfig, task: Task, state: TrainState, module: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any, logger: Any, out_dir: Path,
                     device: torch.device, commit: str | None, rate: float, step_fn: TrainStep) -> dict[str, float]:
    """End a run cut by ``trainer.max_minutes``: ``last.pt``, a ``metrics.json`` with ``"finished": false``, the
    step reached and the best validation metrics so far (no test evaluation), and how to continue."""
    save_last(out_dir, state, module, optimizer, scheduler)
    metrics = {**_best_metrics(state), "train/steps_per_s": rate}
    _write_metrics(cfg, task, metrics, device, state, commit, step_fn, out_dir, finished=False)
    logger.finish()
    print(f"[sst] trainer.max_minutes={cfg.trainer.max_minutes} reached at step {state.step}/{cfg.trainer.max_steps}; "
          f"saved {out_dir / 'last.pt'} and metrics.json (\"finished\": false). To continue, run the same command "
          f"again in the same folder: {continue_command(out_dir)}", flush=True)
    return metrics


def continue_command(out_dir: Path) -> str:
    """The command that resumes this run: the one that started it, with ``hydra.run.dir`` pinned to ``out_dir``
    (Hydra's default folder has a timestamp, so a plain rerun would start afresh elsewhere)."""
    parts = [p for p in command_line().split(" ") if not p.startswith("hydra.run.dir=")]
    return " ".join([*parts, f"hydra.run.dir={out_dir}"])


def count_rate(state: TrainState, train_time: float, elapsed_before: float) -> float:
    """Average training steps per second over the whole run (resumed segments included)."""
    total = elapsed_before + train_time
    return state.step / total if total > 0 else float("nan")


def build_record(cfg: DictConfig, task: Task, metrics: dict[str, float], device: torch.device,
                 wall_time_s: float, commit: str | None = None) -> dict[str, Any]:
    """The metrics.json record: what ran, where, how long, and its final metrics. ``commit`` defaults to HEAD now;
    :func:`fit` passes the commit read when the run started."""
    return {
        "experiment": str(cfg.experiment.name),
        "relaxation": str(cfg.relaxation.name),
        "estimator": str(cfg.estimator.name),
        "seed": int(cfg.seed),
        **task.record_extras(),
        "metrics": metrics,
        "command": command_line(),
        "commit": commit if commit is not None else git_commit(),
        "hardware": hardware(device),
        "wall_time_s": round(wall_time_s, 2),  # the training loop (validation included), over all resumed segments
        "process_time_s": round(process_seconds(), 2),  # this process: start-up, data, training, test, artifacts
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
