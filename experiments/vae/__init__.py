"""Discrete VAE on MNIST (Jang et al. 2017), every estimator of sst.estimators selectable by `estimator=`."""

from __future__ import annotations

from experiments.vae.checks import validate  # torch-free config checks, run before any work

__all__ = ["task_class", "validate"]


def task_class() -> type:
    """The Task class this experiment hands to the shared trainer (imported on demand: torch)."""
    from experiments.vae.task import VAETask

    return VAETask
