"""Shared test helpers: compose the real Hydra config and shrink it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO / "configs")


def compose_cfg(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """Compose configs/config.yaml with ``overrides`` as run.py would."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [], return_hydra_config=return_hydra_config)


# The real config of each experiment shrunk to seconds on a CPU: tiny data, small networks, no logger.
SHRINK = {
    "nri": ["data.num_train=256", "data.num_valid=128", "data.num_test=128", "data.batch_size=32",
            "model.encoder_hidden=32", "model.decoder_hidden=32", "eval.batch_size=128"],
    "vae": ["data.batch_size=16", "data.num_valid=40", "data.limit_eval=24", "eval.iw_samples=4",
            "eval.iw_batch_size=8", "eval.batch_size=10"],
}


def tiny_cfg(experiment: str, *overrides: str) -> DictConfig:
    """The composed config of ``experiment`` on the CPU without a logger, shrunk by ``SHRINK`` (when it has an
    entry), then ``overrides``."""
    return compose_cfg([f"experiment={experiment}", "logger=none", "device=cpu", *SHRINK.get(experiment, []),
                        *overrides])


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-tensor tests (extra threads only add contention on a shared CPU,
    up to 10x slower under load); restores the previous count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def fake_mnist(monkeypatch):
    """The VAE task reads 200 random training and 30 test images instead of MNIST."""
    from experiments.vae import task as vtask

    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (200, 784), generator=g, dtype=torch.uint8)
    test = torch.randint(0, 256, (30, 784), generator=g, dtype=torch.uint8)
    monkeypatch.setattr(vtask, "load_mnist_images", lambda root, allow_download=False: (train, test))
