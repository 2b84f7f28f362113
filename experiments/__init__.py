"""Experiments reproducing Paulus et al. (2020); each package exposes `task_class()` and `train(cfg) -> dict`."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from experiments.common.config import EXPERIMENTS, validate_config


def run_experiment(cfg: DictConfig) -> dict:
    """Validate the composed config (before any work), then call `experiments.<name>.train(cfg)`."""
    validate_config(cfg)
    module = importlib.import_module(f"experiments.{cfg.experiment.name}")
    return module.train(cfg)


def task_class(name: str) -> type:
    """The Task class of experiment ``name`` (for tools that build a task outside ``train``: benchmarks, probes)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {name!r}")
    return importlib.import_module(f"experiments.{name}").task_class()
