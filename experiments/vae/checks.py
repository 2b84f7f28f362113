"""The VAE's config checks (torch-free: run before any data or model work); ``VAETask.validate``."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.common.config import check_choice, check_int, check_number, check_step_schedule, value_of

INITS = ("torch", "xavier")  # experiments.vae.model.INITS (kept torch-free here)
BINARIZE = ("dynamic", "fixed", "threshold", "grey")  # experiments.vae.data.BINARIZE
MNIST_TRAIN = 60000


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (naming the key and the legal values) for a VAE setting the task cannot run with."""
    check_choice(cfg, "model.init", INITS, default="torch")
    check_choice(cfg, "data.binarize", BINARIZE, default="dynamic")
    check_int(cfg, "data.num_valid", low=1, high=MNIST_TRAIN - 1, why="images held out of MNIST's 60,000")
    check_int(cfg, "data.split_seed", optional=True)
    check_int(cfg, "data.limit_eval", low=1, optional=True)
    check_int(cfg, "model.num_vars", low=1, optional=True)
    check_int(cfg, "model.num_classes", low=2, optional=True)
    hidden = value_of(cfg, "model.hidden", None)
    if hidden is not None:
        for i in range(len(hidden)):
            check_int(cfg, f"model.hidden.{i}", low=1)
    check_number(cfg, "anneal.rate", low=0, optional=True)
    check_number(cfg, "anneal.tau_min", low=0, low_open=True, optional=True)
    check_int(cfg, "anneal.every", low=1, optional=True)
    check_int(cfg, "anneal.kl_warmup", low=0, optional=True, why="steps; 0: no warm-up")
    check_int(cfg, "eval.iw_samples", low=1, optional=True)
    check_int(cfg, "eval.iw_batch_size", low=1, optional=True)
    check_step_schedule(cfg)
