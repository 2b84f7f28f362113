"""The one training loop shared by every experiment."""

from __future__ import annotations

import json
import math
import time
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
from experiments.common.loggers import RunningMeans, build_logger
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
    """One optimisation step exactly as :func:`fit` takes it (no host sync): ``task.training_step``, zero_grad,
    backward, optional global-norm clipping, optimizer and scheduler steps. Returns the loss and the logs."""
    loss, logs = task.training_step(batch, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(module.parameters(), float(grad_clip))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss, logs


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
    :func:`experiments.common.runtime.flush_denormal`); the setting is restored afterwards.
    """
    with flush_denormal(bool(cfg.trainer.get("flush_denormal", True))):
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

    batches = skip_batches(iter(task.train_batches(batch_generator(int(cfg.seed), 0, device))), state.step, device)
    meter = RunningMeans()
    t_start = time.perf_counter()
    elapsed_before = state.elapsed_s
    bar = tqdm(total=max_steps, initial=state.step, disable=not tcfg.get("progress", True),
               desc=f"{cfg.experiment.name}/{cfg.relaxation.name}/{cfg.estimator.name}", dynamic_ncols=True)
    try:
        module.train()
        while state.step < max_steps:
            loss, logs = train_step(task, module, optimizer, scheduler, next(batches), state.step, grad_clip)
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
        print(f"[sst] interrupted at step {state.step}; rerun in {out_dir} to resume")
        raise
    finally:
        bar.close()
    train_time = time.perf_counter() - t_start
    state.elapsed_s = elapsed_before + train_time

    load_best(out_dir, module)
    test = _evaluate(task, "test")
    task.save_artifacts(out_dir)
    metrics = {**test, **{f"best/{k}": v for k, v in state.best_metrics.items()}}
    if state.best_step is not None:
        metrics["best/step"] = state.best_step
    metrics["train/steps_per_s"] = count_rate(state, train_time, elapsed_before)
    record = build_record(cfg, task, metrics, device, state.elapsed_s, commit=commit)
    (out_dir / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    logger.log(test, state.step)
    logger.finish()
    return metrics


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
