"""Checkpoints: ``last.pt`` (everything needed to resume) and ``best.pt`` (best-on-validation weights)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

LAST = "last.pt"
BEST = "best.pt"


@dataclass
class TrainState:
    """Loop state that survives a restart."""

    step: int = 0
    best_value: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    logger_run_id: str | None = None


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_last(out_dir: Path, state: TrainState, module: torch.nn.Module, optimizer, scheduler) -> None:
    """Write ``last.pt`` atomically: module, optimizer, scheduler, loop state and torch's RNG state."""
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


def load_last(out_dir: Path, module: torch.nn.Module, optimizer, scheduler) -> TrainState | None:
    """Restore from ``last.pt`` if present and return its loop state, else None."""
    path = Path(out_dir) / LAST
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    module.load_state_dict(ckpt["module"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt["scheduler"] is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if ckpt.get("rng_cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    return TrainState(**ckpt["state"])


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
