"""Gradient variance of every estimator on trained discrete VAEs (experiments.vae.gradvar).

For each finished VAE run folder (``best.pt`` and ``.hydra/config.yaml``): the model at its best step, the
temperature annealed to that step, and one fixed minibatch per ``--splits`` entry: the first ``--batch`` training
images binarised once as a training batch is (``train``), or the first validation images as evaluation binarises
them (``valid``). Measured there, ``--draws`` draws each:

* the run's own estimator, with the parameters it learned (NVIL's baseline, REBAR/RELAX's eta, temperature and
  network) and its frozen running statistics;
* the parameter-free estimators of ``--also`` (default relaxed, straight_through, reinforce, muprop), built from
  ``configs/estimator/<name>.yaml`` at the run's temperature, so every model is measured by the same yardsticks.

Per pair: tr Cov of one draw of the encoder gradient (``total_var``), ||E g||^2 and their ratio (``snr``); for the
biased estimators (relaxed, straight-through) also their bias ||E g_b - E g|| / ||E g|| against the unbiased ones'
inverse-variance weighted mean, squares estimated without the draws' own noise (``rel_bias``; null when that
noise swamps it). For a run trained with NVIL, also how well its learned baseline fits ``f`` (``nvil_baseline``: the
learning signal's mean square against the floor ``Var(f | x)``, 200 samples per image). Writes a study record and
a figure:

    python benchmarks/vae_grad_variance.py outputs/vae_bern/<run> [...] \\
        --out results/vae/studies/grad_variance.json --plot results/vae/grad_variance.png

One thread by default (about 10-20 ms a draw for the paper's model on a 2-core AMD EPYC).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor
from tqdm import tqdm

from experiments.common.checkpoint import load_finished_run
from experiments.common.runtime import provenance, write_record
from experiments.vae.data import binarize
from experiments.vae.gradvar import PARAMETER_FREE, encoder_gradient_moments
from experiments.vae.task import VAETask
from sst.diagnostics import GradientMoments
from sst.estimators import tile

ROOT = Path(__file__).resolve().parents[1]
BIASED = ("relaxed", "straight_through")
SPLITS = ("train", "valid")
# the VAE table's row order, for the figure
ESTIMATOR_ORDER = ("relaxed", "straight_through", "reinforce", "nvil", "muprop", "rebar", "relax")


def pooled_mean(moments: list[GradientMoments]) -> tuple[Tensor, float]:
    """The inverse-variance weighted mean of unbiased estimators' mean draws (weights R / tr Cov each) and its own
    noise, tr Cov of the pooled mean (1 / sum of the weights)."""
    weights = [m.draws / max(m.total_var, 1e-300) for m in moments]
    total = sum(weights)
    return sum(w * m.mean for w, m in zip(weights, moments)) / total, 1.0 / total


def relative_bias(biased: GradientMoments, ref_mean: Tensor, ref_noise: float) -> float | None:
    """||E g_b - E g|| / ||E g|| against an unbiased reference mean of noise ``ref_noise`` (tr Cov of that mean),
    both squares less the means' own noise; None when the correction leaves nothing (the bias is below the draws'
    resolution)."""
    diff = float((biased.mean - ref_mean).pow(2).sum()) - biased.total_var / biased.draws - ref_noise
    signal = float(ref_mean.pow(2).sum()) - ref_noise
    if diff <= 0 or signal <= 0:
        return None
    return math.sqrt(diff / signal)


def minibatch(task: VAETask, split: str, batch: int, seed: int) -> Tensor:
    """(batch, 784) the first ``batch`` images of ``split``: training images binarised once with ``seed`` as the
    training loop binarises a batch, or validation images binarised as evaluation does (once, by the task)."""
    if split == "valid":
        return task.eval_data["valid"][:batch]
    if split != "train":
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    x = task.train_data[:batch]
    if task.mode == "dynamic":
        x = binarize(x, "dynamic", torch.Generator(device=x.device).manual_seed(seed))
    return x


def nvil_baseline_fit(task: VAETask, x: Tensor, samples: int, generator: torch.Generator) -> dict[str, float]:
    """How well NVIL's learned baseline ``b(x) = C(x) + c`` predicts ``f`` on the minibatch ``x`` (B, 784): the
    learning signal's mean square ``E[(f - b(x))^2]`` against its floor ``E[Var(f | x)]``, the mean square of
    the best baseline of ``x``, from ``samples`` exact samples per image (averaged over the images), and the mean
    offset ``E[f] - b(x)``."""
    with torch.no_grad():
        logits = task.model.encode(x)
        rows = tile(logits, samples * logits.shape[0])
        z = task.structure.argmax(task.structure.perturb(rows, generator=generator))
        f = task.model.recon_nll(tile(x, rows.shape[0]), z).reshape(samples, -1)  # (S, B)
        b = task.estimator.learned_baseline(x, x.shape[0], f)  # (B,)
        signal_sq = float(((f - b) ** 2).mean())
        floor_sq = float(f.var(0).mean())
    return {"samples": samples, "signal_sq": signal_sq, "floor_sq": floor_sq, "ratio": signal_sq / floor_sq,
            "mean_offset": float((f.mean(0) - b).mean())}


def measure_run(run_dir: Path, also: list[str], split: str, draws: int, batch: int, seed: int,
                device: torch.device) -> dict:
    """The study's entry for one run folder and minibatch split (see the module docstring)."""
    task = load_finished_run(run_dir, "vae", VAETask, device)
    step = int(torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)["step"])
    tau = task.set_temperature(step)
    x = minibatch(task, split, batch, seed)
    own = str(task.cfg.estimator.name)
    estimators = {own: task.estimator}
    for name in also:
        if name != own:
            est = task.relaxation.estimator_from_config(OmegaConf.load(ROOT / "configs" / "estimator" / f"{name}.yaml"),
                                                        event_shape=task.model.event_shape,
                                                        context_dim=task.model.data_dim).to(device)
            if hasattr(est, "tau"):
                est.tau = tau
            estimators[name] = est
    moments = {}
    for i, (name, est) in enumerate(estimators.items()):
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + i)
        moments[name] = encoder_gradient_moments(task.model, task.structure, est, x, draws, generator=gen)
    measured = {name: m.summary() for name, m in moments.items()}
    unbiased = [m for name, m in moments.items() if name not in BIASED]
    if unbiased:
        ref_mean, ref_noise = pooled_mean(unbiased)
        for name in BIASED:
            if name in moments:
                measured[name]["rel_bias"] = relative_bias(moments[name], ref_mean, ref_noise)
    extra = {}
    if own == "nvil":
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + len(estimators))
        extra["nvil_baseline"] = nvil_baseline_fit(task, x, 200, gen)
    return {"run": run_dir.name, "relaxation": str(task.cfg.relaxation.name), "trained_with": own,
            "seed": int(task.cfg.seed), "step": step, "tau": tau, "split": split, "batch": int(x.shape[0]),
            "draws": draws, "encoder_params": int(moments[own].mean.numel()), "measured": measured, **extra}


def plot(runs: list[dict], path: Path) -> None:
    """log10 tr Cov against the estimator each model was trained with (x): its own estimator (star) and the
    parameter-free ones measured at the same model beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = {name: i for i, name in enumerate(ESTIMATOR_ORDER)}
    trained = sorted(dict.fromkeys(r["trained_with"] for r in runs), key=lambda n: order.get(n, len(order)))
    others = sorted(dict.fromkeys(k for r in runs for k in r["measured"] if k != r["trained_with"]),
                    key=lambda n: order.get(n, len(order)))
    fig, ax = plt.subplots(figsize=(10, 4.4))
    slots = 1 + len(others)
    width = 0.8 / slots

    def at(group: str, slot: int) -> float:
        return trained.index(group) - 0.4 + width * (slot + 0.5)

    ax.scatter([at(r["trained_with"], 0) for r in runs],
               [r["measured"][r["trained_with"]]["log10_total_var"] for r in runs],
               marker="*", s=70, color="black", label="its own estimator", zorder=4)
    for j, name in enumerate(others, start=1):
        pts = [(at(r["trained_with"], j), r["measured"][name]["log10_total_var"]) for r in runs
               if name in r["measured"] and name != r["trained_with"]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, label=name, zorder=3)
    ax.set_xticks(range(len(trained)), [f"model of\n{t.replace('_', '-')}" for t in trained], fontsize=8)
    ax.set_ylabel("log10 tr Cov of the encoder gradient")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    split = runs[0].get("split", "?") if runs else "?"
    ax.set_title(f"Gradient variance at the trained models (one point per seed; a fixed {split} minibatch)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished VAE run folders")
    p.add_argument("--also", default=",".join(PARAMETER_FREE),
                   help=f"parameter-free estimators measured at every model, comma-separated (of "
                        f"{', '.join(PARAMETER_FREE)}; empty for none)")
    p.add_argument("--splits", default="train",
                   help=f"the minibatch's images, comma-separated (of {', '.join(SPLITS)}): one study entry each")
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="the study record (JSON); none when omitted")
    p.add_argument("--plot", type=Path, default=None, help="the figure (PNG); none when omitted")
    args = p.parse_args(argv)
    also = [a for a in args.also.split(",") if a]
    bad = [a for a in also if a not in PARAMETER_FREE]
    if bad:
        raise ValueError(f"--also must name estimators without parameters of their own ({', '.join(PARAMETER_FREE)})"
                         f", got {', '.join(bad)}")
    splits = [x for x in args.splits.split(",") if x]
    if not splits or any(x not in SPLITS for x in splits):
        raise ValueError(f"--splits must name some of {', '.join(SPLITS)}, got {args.splits!r}")
    if args.draws < 2 or args.batch < 1:
        raise ValueError(f"--draws must be >= 2 and --batch >= 1, got {args.draws} and {args.batch}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    entries = []
    for split in splits:
        t0 = time.perf_counter()
        runs = [measure_run(r, also, split, args.draws, args.batch, args.seed, device)
                for r in tqdm(args.runs, desc=f"runs ({split})", unit="run")]
        for r in runs:
            cells = "  ".join(f"{k} {v['log10_total_var']:.2f}" for k, v in r["measured"].items())
            print(f"{r['run']} ({split}): log10 tr Cov  {cells}")
        entries.append({"name": f"grad_variance_{split}", "experiment": "vae", "split": split,
                        "what": f"variance of the encoder gradient per estimator at trained models (best.pt, one "
                                f"fixed minibatch of {split} images)",
                        "runs": runs, **provenance(device, time.perf_counter() - t0)})
    if args.out is not None:
        write_record(args.out, {"study": "grad_variance", "entries": entries})
        print(f"wrote {args.out}")
    if args.plot is not None:
        plot(entries[0]["runs"], args.plot)
        print(f"wrote {args.plot} (the {splits[0]} minibatch)")


if __name__ == "__main__":
    main()
