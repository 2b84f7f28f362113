"""Subnormal floats on the CPU: training steps of trained models with ``trainer.flush_denormal`` on and off.

Subnormal (denormal) floats, below 1.2e-38 in float32, are slow on x86 CPUs. A freshly initialised model makes
few; a trained one at a low temperature can make many (presumably saturated softmaxes, L2X's t = 0.1 and SoftSub's
t = 0.5, and the tiny gradients behind them; not located). So the script loads finished runs: for each run folder
it rebuilds the run's task from the config kept in its ``metrics.json``, restores ``last.pt`` (weights and
optimizer state) and times training iterations exactly as the trainer takes them
(``experiments.common.trainer.train_step``), in blocks that alternate the flag off and on so that both settings
see the same mix of batch lengths and the same machine load. The numbers are steps/s per block and the ratio of
the medians.

    python benchmarks/bench_flush_denormal.py outputs/l2x/l2x-relaxed/<date> outputs/l2x/softsub-relaxed/<date>
    python benchmarks/bench_flush_denormal.py <run> --blocks 4 --steps 25 --threads 1 --out /tmp/flush.json

Writes ``results/bench/flush_denormal_cpu.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from experiments import task_class
from experiments.common.checkpoint import load_last
from experiments.common.runtime import flush_denormal, provenance, write_record
from experiments.common.trainer import batch_generator, train_step

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_OUT = ROOT / "results" / "bench" / "flush_denormal_cpu.json"


def time_run(run: Path, blocks: int, steps: int) -> dict[str, Any]:
    """Steps/s of ``blocks`` blocks of ``steps`` iterations of the trained run in ``run``, the flag alternating
    off, on, off, ... (``blocks`` of each)."""
    record = json.loads((run / "metrics.json").read_text())
    cfg = OmegaConf.create(record["config"])
    cfg.device, cfg.trainer.progress = "cpu", False
    device = torch.device("cpu")
    task = task_class(str(cfg.experiment.name))(cfg, device)
    module = task.module().to(device)
    optimizer, scheduler = task.configure_optimizers()
    state = load_last(run, module, optimizer, scheduler)
    if state is None:
        raise FileNotFoundError(f"{run / 'last.pt'} is missing: the script needs a finished run's checkpoint")
    batches = iter(task.train_batches(batch_generator(int(cfg.seed), state.step, device)))
    module.train()
    rates: dict[str, list[float]] = {"off": [], "on": []}
    step = state.step
    for block in range(2 * blocks):
        key = "on" if block % 2 else "off"
        with flush_denormal(key == "on") as active:
            if key == "on" and not active:
                raise RuntimeError("this CPU cannot flush subnormal floats")
            t = time.perf_counter()
            for _ in range(steps):
                train_step(task, module, optimizer, scheduler, next(batches), step, cfg.trainer.get("grad_clip"))
                step += 1
            rates[key].append(round(steps / (time.perf_counter() - t), 3))
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    tau = task.temperature_at(state.step)  # of the timed steps (the VAE anneals it; the config holds the initial one)
    return {"run": str(run), "experiment": record["experiment"], "relaxation": record["relaxation"],
            "k": record.get("k"), "tau": tau, "from_step": state.step,
            "steps_per_block": steps, "steps_per_s_off": rates["off"], "steps_per_s_on": rates["on"],
            "median_off": off, "median_on": on, "speedup": round(on / off, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders (metrics.json and last.pt)")
    p.add_argument("--blocks", type=int, default=4, help="timed blocks per setting (default 4)")
    p.add_argument("--steps", type=int, default=25, help="iterations per block (default 25)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON path (default {DEFAULT_OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    if args.blocks < 1 or args.steps < 1:
        raise ValueError(f"--blocks and --steps must be >= 1, got {args.blocks} and {args.steps}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    for run in args.runs:
        row = time_run(run, args.blocks, args.steps)
        label = f"{row['experiment']} {row['relaxation']}" + (f" k={row['k']}" if row["k"] is not None else "")
        print(f"{label}: {row['median_off']:.2f} -> {row['median_on']:.2f} steps/s (x{row['speedup']:.2f})")
        rows.append(row)
    record = {"rows": rows, **provenance(torch.device("cpu"), time.perf_counter() - t0)}
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
