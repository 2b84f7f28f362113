"""The interface an experiment implements to plug into the shared trainer (see docs/task_interface.md)."""

from __future__ import annotations

import abc
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

_FUSED_DEVICES = ("cpu", "cuda")
LR_SCHEDULES = ("constant", "cosine", "step")


def adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam at ``lr``: fused (one multi-tensor kernel for all parameters) when every parameter is a floating tensor
    on CUDA or the CPU, foreach (horizontally batched ops) elsewhere.

    On CUDA fused is the launch-cheapest update (the trainer's compiled step leaves the optimizer eager). On the CPU
    fused is also the faster choice: for the VAE's 1.2M parameters on one core, median ms per step (``python
    benchmarks/bench_adam.py --threads 1 --reps 300``, two runs on a loaded 2-core AMD EPYC): fused 2.09 / 12.3,
    foreach 49.0 / 36.1, per-tensor loop 25.0 / 17.6 (the earlier quiet-machine figures: fused 1.5, loop 6.0).
    """
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params)
    return torch.optim.Adam(params, lr=float(lr), fused=True if fused else None, foreach=None if fused else True)


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, lr_min: float = 0.0,
                 decay_every: int | None = None, gamma: float = 0.5) -> LRScheduler | None:
    """The learning-rate schedule, stepped once per iteration (None for ``"constant"``).

    ``"cosine"`` decays each group's lr to ``lr_min`` over ``total_steps``; ``"step"`` multiplies it by ``gamma``
    every ``decay_every`` steps. Both are torch schedulers, so their state is checkpointed and resumed.
    """
    if schedule == "constant":
        return None
    if schedule == "cosine":
        if total_steps < 1 or lr_min < 0:
            raise ValueError(f"cosine schedule needs total_steps >= 1 and lr_min >= 0, got {total_steps}, {lr_min}")
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(total_steps), eta_min=float(lr_min))
    if schedule == "step":
        if decay_every is None or decay_every < 1 or not 0 < gamma <= 1:
            raise ValueError(f"step schedule needs decay_every >= 1 and 0 < gamma <= 1, got {decay_every}, {gamma}")
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(decay_every), gamma=float(gamma))
    raise ValueError(f"schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


class Task(abc.ABC):
    """One experiment: data, model, loss and metrics. The trainer owns the loop.

    Attributes:
        monitor: key of ``evaluate("valid")`` that selects the best checkpoint.
        monitor_mode: ``"min"`` or ``"max"``.
    """

    monitor: str = "valid/loss"
    monitor_mode: str = "min"

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """Raise ``experiments.common.config.ConfigError`` (naming the key and its legal values) for a config this
        task cannot run with, before any data or model work. The default is the ``validate`` function of the
        task's experiment package (``experiments.<name>.checks``, torch-free so that ``run.py`` calls it before
        importing torch); a task without one checks nothing beyond the shared keys."""
        import importlib

        package = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
        check = getattr(package, "validate", None)
        if callable(check):
            check(cfg)

    @abc.abstractmethod
    def module(self) -> torch.nn.Module:
        """Everything with parameters or buffers to optimise and checkpoint (model and estimator)."""

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, LRScheduler | None]:
        """Adam on all parameters at ``cfg.optim.lr`` with the schedule ``cfg.optim.schedule`` (default constant;
        cosine to ``optim.lr_min`` over ``trainer.max_steps``; step: x ``optim.lr_gamma`` every
        ``optim.lr_decay_steps``). The scheduler steps once per iteration."""
        params = [p for p in self.module().parameters() if p.requires_grad]
        opt = adam(params, float(self.cfg.optim.lr))
        return opt, self._scheduler(opt, self.cfg.optim.get("lr_decay_steps"))

    def _scheduler(self, opt: torch.optim.Optimizer, decay_every: int | None) -> LRScheduler | None:
        o = self.cfg.optim
        return lr_scheduler(opt, str(o.get("schedule", "constant")), int(self.cfg.trainer.max_steps),
                            float(o.get("lr_min", 0.0)), None if decay_every is None else int(decay_every),
                            float(o.get("lr_gamma", 0.5)))

    @abc.abstractmethod
    def train_batches(self, generator: torch.Generator) -> Iterator[Any]:
        """An endless iterator of training batches already on ``self.device``."""

    @abc.abstractmethod
    def training_step(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the scalar loss to minimise and detached scalar tensors to log (no ``.item()``)."""

    def eager_twin_step(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`training_step` run eagerly as the compiled step computes it (same shapes, so the same noise): the
        reference of the trainer's compile guard (``experiments.common.compile_guard``). The default is
        :meth:`training_step`; a task whose traced code takes other shapes overrides it."""
        return self.training_step(batch, step)

    @abc.abstractmethod
    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on ``split`` in {"valid", "test"}, keys prefixed by the split. Runs under no_grad, eval mode."""

    def temperature_at(self, step: int) -> float | None:
        """The relaxation's temperature at training step ``step``: ``cfg.relaxation.tau`` (None where the
        relaxation has none); a task that anneals it overrides this."""
        tau = self.cfg.relaxation.get("tau")
        return None if tau is None else float(tau)

    def record_extras(self) -> dict[str, Any]:
        """Extra top-level keys for metrics.json (e.g. ``{"k": 10, "aspect": 1}``)."""
        return {}

    def save_artifacts(self, out_dir: pathlib.Path) -> None:  # noqa: B027 - optional hook
        """Write plots or pages after the final test evaluation (best weights loaded)."""
