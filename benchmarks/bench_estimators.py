"""Time one forward+backward of every estimator on a VAE-sized batch.

Batch of 100 items, 20 categorical variables of 10 classes (logits (100, 20, 10)) from an MLP encoder
784-512-256-200, objective f(z) = -log p(x | z) with an MLP decoder 200-256-512-784 and Bernoulli pixels
(the discrete VAE of Jang et al. 2017). One step = encode + estimator (sampling, f on the samples and relaxed points,
surrogate) + backward; the median over ``--reps`` steps after ``--warmup`` is reported, with the
structures' value checks off (``sst.checks(False)``, as in a training loop).

    python benchmarks/bench_estimators.py [--threads 1] [--reps 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import sst
import sst.estimators as E
from experiments.common.runtime import git_commit, hardware, write_record

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = [
    ("relaxed", "relaxed", {}),
    ("straight_through", "straight_through", {}),
    ("reinforce", "reinforce", {"baseline": "none"}),
    ("reinforce+loo (S=2)", "reinforce", {"baseline": "loo", "num_samples": 2}),
    ("nvil", "nvil", {}),
    ("muprop", "muprop", {}),
    ("rebar", "rebar", {}),
    ("relax", "relax", {}),
]


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def bench(args) -> list[dict]:
    torch.manual_seed(0)
    batch, event, data_dim = args.batch, (20, 10), 784
    encoder = mlp([data_dim, 512, 256, 200])
    decoder = mlp([200, 256, 512, data_dim])
    x = (torch.rand(batch, data_dim) > 0.5).float()
    structure = sst.Categorical()

    def f(z):
        logits = decoder(z.reshape(z.shape[0], -1))
        return F.binary_cross_entropy_with_logits(logits, E.tile(x, z.shape[0]), reduction="none").sum(-1)

    checks = sst.checks(False) if hasattr(sst, "checks") else contextlib.nullcontext()
    rows = []
    with checks:
        # reference: encoder + decoder + backward, no sampling at all (f at the softmax means)
        def reference():
            logits = encoder(x).view(batch, *event)
            f(torch.softmax(logits, -1)).mean().backward()

        for label, name, opts in [("(reference: f at softmax(logits), no sampling)", None, {})] + CONFIGS:
            if name is None:
                step = reference
            else:
                est = E.build(name, tau=0.5, event_shape=event, context_dim=data_dim, **opts)

                def step(est=est):
                    logits = encoder(x).view(batch, *event)
                    out = est(structure, logits, f, context=x)
                    out.loss.backward()

            for _ in range(args.warmup):
                step()
            times, cpu = [], []
            for _ in range(args.reps):
                t0, c0 = time.perf_counter(), time.thread_time()
                step()
                times.append(1000 * (time.perf_counter() - t0))
                cpu.append(1000 * (time.thread_time() - c0))
            q = statistics.quantiles(times, n=4)
            rows.append({"estimator": label, "median_ms": round(statistics.median(times), 2),
                         "q1_ms": round(q[0], 2), "q3_ms": round(q[2], 2),
                         "cpu_median_ms": round(statistics.median(cpu), 2)})
            r = rows[-1]
            print(f"{label:48s} {r['median_ms']:8.2f} ms  (IQR {r['q1_ms']:.2f}-{r['q3_ms']:.2f}), "
                  f"CPU {r['cpu_median_ms']:.2f} ms", flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "estimators")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = bench(args)
    md = ["| estimator | f rows per item | forward+backward, wall (ms, median) | CPU time (ms) | x reference (CPU) |",
          "|---|---|---|---|---|"]
    ref_cpu = rows[0]["cpu_median_ms"]
    f_rows = {"reinforce+loo (S=2)": 2, "muprop": 2, "rebar": 3, "relax": 3}
    for r in rows:
        md.append(f"| {r['estimator']} | {f_rows.get(r['estimator'], 1)} | {r['median_ms']:.1f} "
                  f"| {r['cpu_median_ms']:.1f} | {r['cpu_median_ms'] / ref_cpu:.1f} |")
    table = "\n".join(md)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(["python", "benchmarks/bench_estimators.py", *(argv or sys.argv[1:])]),
              "commit": git_commit(), "batch": args.batch, "event_shape": [20, 10], "threads": args.threads,
              "reps": args.reps, "hardware": hardware(), "rows": rows}
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    record["load_average"] = load
    write_record(args.out / "bench.json", record)
    (args.out / "bench.md").write_text(table + f"\n\nbatch {args.batch} x 20 x 10, {args.threads} thread(s), "
                                       f"load average {load} (CPU time is the thread's own time).\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
