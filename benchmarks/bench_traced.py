"""Time each structure's relaxed sample, forward and backward, eagerly, under ``torch.compile`` and under
``torch.func.vmap`` (issue 53, item 4).

Under a tracer the structures take their value-free paths (docs/library.md "torch.func and torch.compile"): the
exact trees take the log-space elimination for every graph instead of one inverse with a per-graph bound, numba's
kernels give way to PyTorch, the hard solvers and Sinkhorn run as opaque operators. This measures what that costs
or gains against eager mode, batch 128: TopK(10) and CorrelatedTopK(10) over 50 items, Categorical over 50,
trees and arborescences on 10 nodes, permutations of 10:

    python benchmarks/bench_traced.py            # CPU, one thread: results/bench/traced_cpu.json
    python benchmarks/bench_traced.py --quick    # seconds; smoke test, writes no record

``compiled`` is ``torch.compile(step, fullgraph=True)`` (static shapes; its compile time is not timed); ``vmap``
maps ``step`` over the batch (randomness="different"). Calls interleaved round by round after one warm-up each.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import sst
from benchmarks.bench_distributions import parse_sizes, time_interleaved
from experiments.common.runtime import write_device_bench_record

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "bench" / "traced_cpu.json"


def cases(batch: int, n_items: int, k: int, n_nodes: int) -> list[tuple[str, sst.Structure, torch.Tensor]]:
    """``(name, structure, logits)`` for each structure timed."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(batch, n_nodes, n_nodes, generator=gen)
    return [
        (f"Categorical({n_items})", sst.Categorical(), torch.randn(batch, n_items, generator=gen)),
        (f"TopK({k}) of {n_items}", sst.TopK(k), torch.randn(batch, n_items, generator=gen)),
        (f"CorrelatedTopK({k}) of {n_items}", sst.CorrelatedTopK(k),
         torch.randn(batch, 2 * n_items - 1, generator=gen)),
        (f"SpanningTree n={n_nodes}", sst.SpanningTree(), w + w.mT),
        (f"Arborescence n={n_nodes}", sst.Arborescence(), torch.randn(batch, n_nodes, n_nodes, generator=gen)),
        (f"Permutation n={n_nodes}", sst.Permutation(), torch.randn(batch, n_nodes, n_nodes, generator=gen)),
    ]


def _fwd_bwd(f: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x = w.detach().requires_grad_(True)
        (f(x) ** 2).sum().backward()
    return run


def bench(batch: int, n_items: int, k: int, n_nodes: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for name, S, w in cases(batch, n_items, k, n_nodes):
        def step(x: torch.Tensor, S: sst.Structure = S) -> torch.Tensor:
            return sst.sample(S, x, 0.5)
        torch._dynamo.reset()
        compiled = torch.compile(step, fullgraph=True, dynamic=False)
        mapped = torch.func.vmap(step, randomness="different")
        fns = {"eager": _fwd_bwd(step, w), "compiled": _fwd_bwd(compiled, w), "vmap": _fwd_bwd(mapped, w)}
        ms = time_interleaved(fns, torch.device("cpu"), rounds)
        rows.append({"structure": name, "batch": batch, "ms": ms})
        print(f"{name:28s} eager {ms['eager']['best_ms']:8.2f} ms, compiled {ms['compiled']['best_ms']:8.2f} ms, "
              f"vmap {ms['vmap']['best_ms']:8.2f} ms (best of {rounds})")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args = parse_sizes(parser, argv, 50, "n of Categorical, TopK and CorrelatedTopK",
                       "n of the trees, arborescences and permutations", DEFAULT_OUT)
    rows = bench(args.batch, args.items, args.k, args.nodes, args.rounds)
    return write_device_bench_record("traced", torch.device("cpu"), DEFAULT_OUT, args.out, args.quick,
                                     rounds=args.rounds, results=rows)


if __name__ == "__main__":
    main()
