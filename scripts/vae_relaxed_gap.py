"""Test -ELBO of trained discrete VAEs with hard latent samples (the bound we report) and with relaxed ones.

    python scripts/vae_relaxed_gap.py outputs/final/vae_binary_concrete_relaxed ... [--taus 0.5 0.3 0.1]
        [-o results/vae/relaxed_gap.json]

A relaxed estimator trains the decoder on relaxed samples; its training objective, evaluated on test images, is
the "-ELBO" with relaxed z (the discrete KL plus -log p(x | z_relaxed)). That is not a bound on the discrete
model's likelihood, and the decoder can read information from the relaxed values that a hard sample does not
carry, so it sits below the hard bound. This script measures both for each run folder (its
``.hydra/config.yaml`` and ``best.pt``) and writes one JSON record.
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
from experiments.vae.model import neg_elbo  # noqa: E402
from experiments.vae.task import VAETask  # noqa: E402


def load_run(run_dir: Path, device: torch.device) -> VAETask:
    """The VAE task of a finished run folder with its best weights loaded (eval mode)."""
    return load_finished_run(run_dir, "vae", VAETask, device)


@torch.no_grad()
def test_neg_elbo(task: VAETask, tau: float | None, seed: int = 1) -> float:
    """Mean single-sample test -ELBO: hard samples when ``tau`` is None, else relaxed ones at ``tau``."""
    g = torch.Generator(device=task.device).manual_seed(seed)
    sample = task.hard_sampler(g) if tau is None else task.relaxed_sampler(g, tau)
    x_all = task.eval_data["test"]
    total = sum(float(neg_elbo(task.model, x, sample)[0].sum()) for x in x_all.split(task.eval_batch))
    return total / x_all.shape[0]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="VAE run folders (with .hydra/config.yaml and best.pt)")
    ap.add_argument("--taus", nargs="+", type=float, default=[0.5, 0.3, 0.1])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-o", "--out", type=Path, default=None, help="write the record here (default: print only)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    rows = []
    for run in args.runs:
        task = load_run(run, device)
        row = {"run": run.name, "relaxation": str(task.cfg.relaxation.name),
               "estimator": str(task.cfg.estimator.name), "anneal": task.anneal,
               "hard": test_neg_elbo(task, None),
               "relaxed": {str(t): test_neg_elbo(task, t) for t in args.taus}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {"experiment": "vae", "what": "test -ELBO with hard vs relaxed latent samples (best.pt of each run)",
              "runs": rows, **provenance(device, time.perf_counter() - t0)}
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
