"""Experiments reproducing Paulus et al. (2020); each package exposes `validate(cfg)` (torch-free config checks)
and `task_class()` (its Task); :func:`train` runs any of them with the one shared trainer. An experiment outside
this package names its Task class in its config (`experiment._target_`: experiments/common/registry.py)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.common.config import experiment_module, validate_config
from experiments.common.errors import user_errors
from experiments.common.summary import print_run_summary


def run_experiment(cfg: DictConfig) -> dict:
    """Validate the composed config (before any work: shared keys, then ``experiments.<name>.validate``), then
    :func:`train`, then print a short summary (final metrics, output folder, the command that collects the record
    or resumes the run: :mod:`experiments.common.summary`). A config error, a refused resume or an interrupt prints
    one message (the traceback only with HYDRA_FULL_ERROR=1), exits with a non-zero status and leaves no empty run
    folder."""
    with user_errors():
        validate_config(cfg)
        metrics = train(cfg)
    print_run_summary(metrics)
    return metrics


def train(cfg: DictConfig) -> dict:
    """Train and evaluate the experiment of ``cfg`` (the Task named by ``experiment._target_``, else
    ``experiments.<experiment.name>``'s) with the shared trainer (:func:`experiments.common.trainer.fit`:
    checkpoints, resume, ``metrics.json`` in the run folder); returns the final metrics."""
    from experiments.common.registry import task_for
    from experiments.common.trainer import fit

    return fit(cfg, task_for(cfg))


def task_class(name: str) -> type:
    """The Task class of the repository experiment ``name``, the package ``experiments.<name>`` (for tools that build
    a task outside ``train``: benchmarks, probes); ConfigError (a ValueError) listing the experiments otherwise."""
    return experiment_module(name).task_class()
