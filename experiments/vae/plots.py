"""PNG figures of one discrete-VAE run: reconstructions and prior samples (training curves of several runs:
experiments.report.figures.plot_vae_curves)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def _grid(images: np.ndarray, cols: int) -> np.ndarray:
    """(N, 784) in [0, 1] -> one (rows*28, cols*28) mosaic with 1-pixel gaps."""
    n = images.shape[0]
    rows = -(-n // cols)
    out = np.ones((rows * 29 - 1, cols * 29 - 1))
    for i, img in enumerate(images.reshape(n, 28, 28)):
        r, c = divmod(i, cols)
        out[r * 29 : r * 29 + 28, c * 29 : c * 29 + 28] = img
    return out


def plot_reconstructions(x: Tensor, recon: Tensor, path: Path, title: str = "") -> Path:
    """Top row: binarised test images; bottom row: decoder means p(x|z) for one hard z ~ q(z|x)."""
    both = np.concatenate([x.numpy(), recon.numpy()], 0)
    fig, ax = plt.subplots(figsize=(8, 1.3))
    ax.imshow(_grid(both, x.shape[0]), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"reconstructions ({title}): data (top), decoder mean (bottom)", fontsize=8)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_prior_samples(probs: Tensor, path: Path, title: str = "") -> Path:
    """Decoder means p(x|z) for z drawn from the uniform prior, as an 8-column mosaic."""
    fig, ax = plt.subplots(figsize=(4, 4 * (-(-probs.shape[0] // 8)) / 8))
    ax.imshow(_grid(probs.numpy(), 8), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"samples from the prior ({title})", fontsize=8)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return Path(path)

