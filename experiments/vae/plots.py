"""PNG figures for the discrete VAE: reconstructions, prior samples, and training curves of several runs."""

from __future__ import annotations

import json
from collections.abc import Iterable
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


def load_run(path: Path) -> dict:
    """A run's label and curve, from a run folder (history.jsonl, metrics.json) or a metrics.json record."""
    from experiments.vae.task import read_curve

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    record_path = path if path.is_file() else folder / "metrics.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    curve = record.get("curve")
    if (folder / "history.jsonl").is_file():
        curve = read_curve(folder / "history.jsonl")
    if not curve or not curve.get("step"):
        raise ValueError(f"{path}: no training curve (expected history.jsonl or a metrics.json with 'curve')")
    label = f"{record.get('relaxation', '?')} / {record.get('estimator', '?')}"
    if not record:  # still running: take the label from the hydra config saved in the folder
        hydra_cfg = folder / ".hydra" / "config.yaml"
        if hydra_cfg.is_file():
            from omegaconf import OmegaConf

            c = OmegaConf.load(hydra_cfg)
            label = f"{c.relaxation.name} / {c.estimator.name}"
    test = record.get("metrics", {}).get("test/neg_elbo")
    if test is not None:
        label += f" (test {test:.1f})"
    return {"label": label, "curve": curve}


def plot_curves(paths: Iterable[Path], out: Path, title: str = "Discrete VAE on MNIST") -> Path:
    """Valid (solid) and train (dashed) negative ELBO against steps, one colour per run, on one figure."""
    runs = [load_run(Path(p)) for p in paths]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, run in enumerate(sorted(runs, key=lambda r: r["label"])):
        c = run["curve"]
        colour = f"C{i % 10}"
        ax.plot(c["step"], c["valid/neg_elbo"], "-", color=colour, label=run["label"])
        train = [np.nan if v is None else v for v in c["train/neg_elbo"]]
        ax.plot(c["step"], train, "--", color=colour, alpha=0.6)
    ax.set_xlabel("training step")
    ax.set_ylabel("negative ELBO (nats); solid: valid, dashed: train")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    lo = [min(r["curve"]["valid/neg_elbo"]) for r in runs]
    if lo:
        ax.set_ylim(min(lo) - 5, min(lo) + 60)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return Path(out)
