"""Checkpoints: ``last.pt`` (everything needed to resume) and ``best.pt`` (best-on-validation weights)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from experiments.common.errors import ResumeError, save_hydra_files
from experiments.common.loggers import trim_history

LAST = "last.pt"
BEST = "best.pt"
# Keys that may differ between a run and its resume: how long it trains and how it reports, not what it trains.
# A prefix covers the keys below it (``logger`` covers ``logger.mode``). experiment.max_steps and eval_every are
# the defaults of the trainer's; trainer.loss_limit only says when a diverging run stops.
RESUMABLE_KEYS = ("trainer.max_steps", "trainer.eval_every", "trainer.log_every", "trainer.progress",
                  "trainer.max_minutes", "trainer.compile", "trainer.tf32", "trainer.resume", "trainer.loss_limit",
                  "experiment.max_steps", "experiment.eval_every", "logger", "device")


@dataclass
class TrainState:
    """Loop state that survives a restart."""

    step: int = 0
    best_value: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    logger_run_id: str | None = None
    config: dict[str, Any] | None = None  # the resolved config the run trains under (checked on resume)


def _tmp_path(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".tmp")


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = _tmp_path(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_last(out_dir: Path, state: TrainState, module: torch.nn.Module, optimizer, scheduler) -> None:
    """Write ``last.pt`` atomically: module, optimizer, scheduler, loop state and torch's RNG state; and keep a
    copy of the run's ``.hydra`` files in ``.hydra/last/`` (put back when a later command in the folder fails)."""
    save_hydra_files(Path(out_dir))
    _atomic_save(
        {
            "state": asdict(state),
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        Path(out_dir) / LAST,
    )


def config_snapshot(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers (what ``last.pt`` keeps to check a resume against)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def may_change_on_resume(key: str) -> bool:
    """Whether ``key`` (dotted) is one of :data:`RESUMABLE_KEYS` or below one."""
    return any(key == p or key.startswith(p + ".") for p in RESUMABLE_KEYS)


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every dotted key whose value differs (``<absent>`` on the side
    that lacks it), leaving out the keys that may change on resume."""
    a, b = _flatten(saved), _flatten(current)
    absent = "<absent>"
    return [(k, a.get(k, absent), b.get(k, absent)) for k in sorted(set(a) | set(b))
            if not may_change_on_resume(k) and (k not in a or k not in b or a[k] != b[k])]


def read_last(out_dir: Path, cfg: DictConfig | None = None) -> dict[str, Any] | None:
    """The checkpoint ``<out_dir>/last.pt`` to resume from (on the CPU), or None when there is none.

    Called before any data or model work. A ``last.pt.tmp`` left by a run killed while saving is reported and
    removed. Raises ResumeError when ``last.pt`` cannot be read (naming the file and the way out) or when it was
    written under another config than ``cfg`` (naming the differing keys), unless only keys that may change on
    resume (:data:`RESUMABLE_KEYS`) differ.
    """
    path = Path(out_dir) / LAST
    tmp = _tmp_path(path)
    if tmp.is_file():
        if path.is_file():
            print(f"[sst] {tmp} is a partial checkpoint from a run killed while saving; it is removed and the run "
                  f"resumes from {path}")
        else:
            print(f"[sst] {tmp} is all that is left of the first checkpoint of a run killed while saving it: there "
                  f"is nothing to resume, so this run starts from step 0 (the partial file is removed)")
        tmp.unlink()
    if not path.is_file():
        return None
    way_out = f"to start this run again from step 0, rerun with trainer.resume=false or delete {path}"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, pickle errors ... for a damaged file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ResumeError(f"cannot resume: {path} is truncated or corrupt ({reason}); {way_out}") from err
    if not isinstance(ckpt, dict) or not {"state", "module", "optimizer"} <= set(ckpt):
        raise ResumeError(f"cannot resume: {path} is not a checkpoint of this trainer; {way_out}")
    saved = ckpt["state"].get("config")
    if cfg is not None and saved is not None:
        diffs = config_differences(saved, config_snapshot(cfg))
        if diffs:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:12])
            more = f" (and {len(diffs) - 12} more)" if len(diffs) > 12 else ""
            raise ResumeError(
                f"refusing to resume from {path}: it was trained under another config. Differing keys (saved -> "
                f"now): {shown}{more}. Only {', '.join(RESUMABLE_KEYS)} may change on resume. Run in a new folder "
                f"(without hydra.run.dir), or rerun with trainer.resume=false to overwrite this run."
            )
    elif cfg is not None:
        print(f"[sst] {path} predates config checks on resume: resuming without comparing configs")
    return ckpt


def restore(ckpt: dict[str, Any], module: torch.nn.Module, optimizer, scheduler) -> TrainState:
    """Load a checkpoint read by :func:`read_last` into ``module``, ``optimizer``, ``scheduler`` and torch's RNG;
    return its loop state."""
    module.load_state_dict(ckpt["module"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt["scheduler"] is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if ckpt.get("rng_cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    return TrainState(**ckpt["state"])


def load_last(out_dir: Path, module: torch.nn.Module, optimizer, scheduler,
              cfg: DictConfig | None = None) -> TrainState | None:
    """Restore from ``last.pt`` if present and return its loop state, else None (checked as :func:`read_last`)."""
    ckpt = read_last(out_dir, cfg)
    return None if ckpt is None else restore(ckpt, module, optimizer, scheduler)


def start_state(ckpt: dict[str, Any] | None, cfg: DictConfig, out_dir: Path, module: torch.nn.Module, optimizer,
                scheduler) -> TrainState:
    """The loop state a run starts from: restored from ``ckpt`` (history.jsonl is then cut back to its step, so
    that each step appears once) or a fresh one (a history.jsonl left by an earlier run in the folder is
    cleared). Either way the state records ``cfg`` for the next resume's check."""
    out_dir = Path(out_dir)
    if ckpt is not None:
        state = restore(ckpt, module, optimizer, scheduler)
        trim_history(out_dir, state.step)
        print(f"[sst] resuming from {out_dir / LAST} at step {state.step}")
    else:
        state = TrainState()
        if (out_dir / LAST).is_file():
            print(f"[sst] trainer.resume=false: starting from step 0; {out_dir / LAST} will be overwritten")
        trim_history(out_dir, 0)
    state.config = config_snapshot(cfg)
    return state


def skip_batches(batches: Iterator[Any], step: int, device: torch.device | str = "cpu") -> Iterator[Any]:
    """Advance ``batches`` past the ``step`` batches a resumed run has already trained on, so that it continues
    the interrupted run's data order: with the same generator, a run stopped and resumed at any step sees exactly
    the batches of an uninterrupted one. torch's global RNG is left as it was (the checkpoint set it)."""
    if step <= 0:
        return batches
    t0 = time.perf_counter()
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for _ in range(int(step)):
            next(batches)
    print(f"[sst] data order replayed to step {step} ({time.perf_counter() - t0:.1f}s)")
    return batches


def save_best(out_dir: Path, module: torch.nn.Module, step: int, metrics: dict[str, float]) -> None:
    """Write ``best.pt``: the module's weights with the step and validation metrics that chose them."""
    _atomic_save({"module": module.state_dict(), "step": step, "metrics": metrics}, Path(out_dir) / BEST)


def load_best(out_dir: Path, module: torch.nn.Module) -> bool:
    """Load ``best.pt`` into ``module`` if present; return whether it was."""
    path = Path(out_dir) / BEST
    if not path.is_file():
        return False
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["module"])
    return True


def load_finished_run(run_dir: Path, experiment: str, task_factory: Callable[[Any, torch.device], Any],
                      device: torch.device) -> Any:
    """Rebuild a run's task from ``<run_dir>/.hydra/config.yaml`` and load its ``best.pt`` (module in eval mode).

    Raises ValueError when a file is missing or the run belongs to another experiment.
    """
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    for path in (cfg_path, run_dir / BEST):
        if not path.is_file():
            raise ValueError(f"run_dir must be a finished {experiment} run folder; {path} is missing")
    cfg = OmegaConf.load(cfg_path)
    if cfg.experiment.name != experiment:
        raise ValueError(f"run_dir must be a {experiment} run, {run_dir} is a {cfg.experiment.name} run")
    cfg.trainer.progress = False
    task = task_factory(cfg, device)
    module = task.module()
    module.load_state_dict(torch.load(run_dir / BEST, map_location=device, weights_only=False)["module"])
    module.eval()
    return task
