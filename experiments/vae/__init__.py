"""Discrete VAE on MNIST (Jang et al. 2017), every estimator of sst.estimators selectable by `estimator=`."""

from __future__ import annotations

from omegaconf import DictConfig


def train(cfg: DictConfig) -> dict:
    """Train and evaluate the discrete VAE with the shared trainer; returns the final metrics."""
    from experiments.common.trainer import fit
    from experiments.vae.task import VAETask

    return fit(cfg, VAETask)
