"""How much of its latent code each trained discrete VAE uses: per latent variable, on the test images.

    python scripts/vae_latent_usage.py outputs/final/<run> ... [-o results/vae/latent_usage.json]
        [--plot results/vae/latent_usage.png]

For each run folder (its ``.hydra/config.yaml`` and ``best.pt``) this encodes the test images and reports, over
the latent variables (``experiments.vae.usage.latent_usage``): the mean KL to the uniform prior (its sum is the
KL term of the ELBO), the mean posterior entropy H(q(z_v|x)) (the noise a hard sample adds given the image; its
sum is what the hard code does not pin down), the mutual information I(x; z_v), how many variables carry more
than 0.01 nats of it, and the share of (image, variable) pairs the posterior decides (probability >= 0.99 on one
class). The plot shows the per-variable KL and entropy of each run, variables sorted by KL.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common.checkpoint import load_finished_run  # noqa: E402
from experiments.common.runtime import provenance, write_record  # noqa: E402
from experiments.vae.task import VAETask  # noqa: E402
from experiments.vae.usage import latent_usage  # noqa: E402

ACTIVE_NATS = 0.01


@torch.no_grad()
def run_usage(run_dir: Path, device: torch.device) -> dict:
    """The usage summary of one run folder, with its per-variable numbers sorted by decreasing KL."""
    task = load_finished_run(run_dir, "vae", VAETask, device)
    x_all = task.eval_data["test"]
    logits = torch.cat([task.model.encode(x) for x in x_all.split(task.eval_batch)])
    usage = latent_usage(logits, task.model.latent)
    task.iw_samples = 0  # the single-sample bound only, with the run's own evaluation draws (as in its record)
    hard = task.evaluate("test")["test/neg_elbo"]
    order = torch.argsort(usage["kl"], descending=True)
    return {"run": run_dir.name, "relaxation": str(task.cfg.relaxation.name),
            "estimator": str(task.cfg.estimator.name), "latent": task.model.latent,
            "num_vars": task.model.num_vars, "num_classes": task.model.num_classes,
            "test_neg_elbo": hard,
            "kl": float(usage["kl"].sum()), "entropy": float(usage["entropy"].sum()),
            "mutual_info": float(usage["mutual_info"].sum()),
            "active": int((usage["mutual_info"] > ACTIVE_NATS).sum()),
            "decided": float(usage["decided"].mean()),
            "per_variable": {k: [round(float(x), 5) for x in v[order]] for k, v in usage.items()}}


def plot(rows: list[dict], out: Path) -> None:
    """Per-variable KL and posterior entropy of each run, variables sorted by KL (x: rank / number of variables)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8 + 0.2 * len(rows)))
    for row in rows:
        n = row["num_vars"]
        rank = [(i + 0.5) / n for i in range(n)]
        label = f"{row['run'].removeprefix('vae_')}: {n}×{row['num_classes']}, -ELBO {row['test_neg_elbo']:.1f}"
        axes[0].plot(rank, row["per_variable"]["kl"], label=label)
        axes[1].plot(rank, row["per_variable"]["entropy"])
    axes[0].set(xlabel="variable rank / number of variables", ylabel="KL to the prior (nats)",
                title="KL per latent variable")
    axes[1].set(xlabel="variable rank / number of variables", ylabel="H(q(z_v|x)) (nats)",
                title="posterior entropy per latent variable")
    fig.legend(loc="lower center", ncol=1, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.045 * len(rows) + 0.02, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="VAE run folders (with .hydra/config.yaml and best.pt)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-o", "--out", type=Path, default=None, help="write the record here (default: print only)")
    ap.add_argument("--plot", type=Path, default=None, help="write the per-variable figure here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    rows = []
    for run in args.runs:
        row = run_usage(run, device)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "per_variable"}), flush=True)
    if args.plot is not None:
        plot(rows, args.plot)
    record = {"experiment": "vae", "what": "latent usage of the posterior on the test images (best.pt of each run)",
              "active_nats": ACTIVE_NATS, "runs": rows, **provenance(device, time.perf_counter() - t0)}
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
