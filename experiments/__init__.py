"""Experiments reproducing Paulus et al. (2020); each package exposes `train(cfg) -> dict`."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from experiments.common.config import validate_config


def run_experiment(cfg: DictConfig) -> dict:
    """Validate the composed config (before any work), then call `experiments.<name>.train(cfg)`."""
    validate_config(cfg)
    module = importlib.import_module(f"experiments.{cfg.experiment.name}")
    return module.train(cfg)
