"""Time the exact samplers of ``sst.distributions.Gibbs`` against the relaxed draw of ``sst.sample`` (issue 53).

One exact draw ``Gibbs(S, logits).sample()`` and one relaxed draw ``sst.sample(S, logits, tau=1)`` (forward only, no
gradient) of the same batch of float32 logits, for TopK(10) and CorrelatedTopK(10) over 350 items and spanning trees
and arborescences on 10 nodes, batch 128:

    python benchmarks/bench_distributions.py            # CPU, one thread: results/bench/distributions_cpu.json
    python benchmarks/bench_distributions.py --quick    # seconds; smoke test, writes no record

Calls are interleaved round by round (one call of each per round, after one warm-up call each), so a change in the
machine's load hits both alike; the record holds the best and the median of the rounds (ms).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import sst
from benchmarks.bench_hard_solvers import interleaved_times
from experiments.common.runtime import write_device_bench_record
from sst.distributions import Gibbs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "bench" / "distributions_cpu.json"


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device,
                     rounds: int) -> dict[str, dict[str, float]]:
    """Best and median wall time (ms) of each function, one call of each per round, after one warm-up call each."""
    times = interleaved_times(fns, device, rounds)
    return {name: {"best_ms": 1e3 * min(ts), "median_ms": 1e3 * statistics.median(ts)} for name, ts in times.items()}


def cases(batch: int, n_items: int, k: int, n_nodes: int, device: torch.device) -> list[tuple[str, sst.Structure,
                                                                                             torch.Tensor, int]]:
    """``(name, structure, logits, n)`` for each structure timed."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(batch, n_nodes, n_nodes, generator=gen)
    return [
        (f"TopK({k})", sst.TopK(k), torch.randn(batch, n_items, generator=gen).to(device), n_items),
        (f"CorrelatedTopK({k})", sst.CorrelatedTopK(k),
         torch.randn(batch, 2 * n_items - 1, generator=gen).to(device), n_items),
        ("SpanningTree", sst.SpanningTree(), (w + w.transpose(-1, -2)).to(device), n_nodes),
        ("Arborescence", sst.Arborescence(), torch.randn(batch, n_nodes, n_nodes, generator=gen).to(device), n_nodes),
    ]


def bench(device: torch.device, batch: int, n_items: int, k: int, n_nodes: int,
          rounds: int) -> list[dict[str, Any]]:
    rows = []
    for name, S, logits, n in cases(batch, n_items, k, n_nodes, device):
        d = Gibbs(S, logits)
        fns = {"exact_sample": lambda d=d: d.sample(),
               "relaxed_sample": lambda S=S, logits=logits: sst.sample(S, logits, tau=1.0)}
        with torch.no_grad():
            ms = time_interleaved(fns, device, rounds)
        row = {"structure": name, "batch": batch, "n": n, "ms": ms,
               "exact_over_relaxed_best": ms["exact_sample"]["best_ms"] / ms["relaxed_sample"]["best_ms"]}
        rows.append(row)
        print(f"{name:18s} {batch} x n={n:3d}: exact {ms['exact_sample']['best_ms']:8.2f} ms "
              f"(median {ms['exact_sample']['median_ms']:.2f}), relaxed {ms['relaxed_sample']['best_ms']:8.2f} ms "
              f"(median {ms['relaxed_sample']['median_ms']:.2f})")
    return rows


def parse_sizes(parser: argparse.ArgumentParser, argv: list[str] | None, items: int, items_help: str,
                nodes_help: str, out: Path) -> argparse.Namespace:
    """The options this benchmark and benchmarks/bench_traced.py share (sizes, rounds, threads, record path,
    ``--quick``), parsed; sets the thread count and, with ``--quick``, the smoke sizes."""
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--items", type=int, default=items, help=items_help)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=10, help=nodes_help)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default one)")
    parser.add_argument("--out", default=None, help=f"record path (default {out.relative_to(ROOT)})")
    parser.add_argument("--quick", action="store_true", help="smoke run (batch 4, 12 items, k 3, 5 nodes): no record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.batch, args.items, args.k, args.nodes, args.rounds = 4, 12, 3, 5, 2
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    args = parse_sizes(parser, argv, 350, "n of TopK and CorrelatedTopK", "n of SpanningTree and Arborescence",
                       DEFAULT_OUT)
    device = torch.device(args.device)
    rows = bench(device, args.batch, args.items, args.k, args.nodes, args.rounds)
    return write_device_bench_record("distributions", device, DEFAULT_OUT, args.out, args.quick, rounds=args.rounds,
                                     results=rows)


if __name__ == "__main__":
    main()
