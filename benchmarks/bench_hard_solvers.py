"""Benchmark the batched PyTorch hard solvers against the per-matrix CPU solvers.

- Permutation.argmax: ``sst.structures._assignment.max_assignment`` (batched shortest-augmenting-path Hungarian)
  against ``scipy.optimize.linear_sum_assignment`` in a Python loop over the batch (the CPU path with SciPy);
- Arborescence.argmax: ``sst.structures._edmonds.max_arborescence_batched`` (batched Chu-Liu/Edmonds) against
  the NumPy ``max_arborescence`` in a Python loop (the CPU path).

The PyTorch solvers are timed in both loop modes: ``early_exit`` (the CPU default: a round stops once every
matrix is done, one host check per step) and ``sync_free`` (the device default: fixed-length loops, no host sync).
``ops_sync_free`` counts the ATen operations one sync-free call dispatches, views and wrapped Python scalars left
out: the kernel launches it costs on a GPU, where these solvers are launch-bound at these sizes (at a few
microseconds per launch, that count sets the device time).

    python benchmarks/bench_hard_solvers.py                 # CPU, one thread: results/bench/hard_solvers_cpu.json
    python benchmarks/bench_hard_solvers.py --device cuda   # the PyTorch solvers on the GPU against the host path
    python benchmarks/bench_hard_solvers.py --quick         # seconds; smoke test, writes no record

Times are medians (ms) over calls interleaved round by round (one call of each solver per round), so a change in
the machine's load hits all of them alike; CUDA-synchronised on GPU. The host path on a GPU includes the copies.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from experiments.common.runtime import write_device_bench_record
from sst.structures._assignment import max_assignment
from sst.structures._edmonds import max_arborescence, max_arborescence_batched

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_OUT = ROOT / "results" / "bench" / "hard_solvers_cpu.json"


_NO_KERNEL = {"aten.scalar_tensor.default", "aten.lift_fresh.default"}  # Python scalars wrapped on the host


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched inside the ``with`` block that launch a kernel on a device (views and
    wrapped Python scalars excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if not func.is_view and str(func) not in _NO_KERNEL:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> int:
    """The number of kernel-launching ATen operations one call of ``fn`` dispatches."""
    with _OpCounter() as counter:
        fn()
    return counter.count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                     budget_s: float) -> dict[str, float]:
    """Median wall time (ms) of each function, one call of each per round, after one warm-up call each."""
    times = interleaved_times(fns, device, rounds, budget_s)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def interleaved_times(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                      budget_s: float = float("inf")) -> dict[str, list[float]]:
    """Wall times (s) of each function, one call of each per round, after one warm-up call each; the rounds stop
    after ``budget_s`` once every function has three."""
    for fn in fns.values():
        fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(next(iter(times.values()))) >= 3:
            break
    return times


def _host_assignment(w: torch.Tensor) -> Callable[[], object]:
    from scipy.optimize import linear_sum_assignment

    def run() -> torch.Tensor:
        flat = w.to("cpu", torch.float64).numpy()
        cols = np.stack([linear_sum_assignment(m, maximize=True)[1] for m in flat])
        return torch.from_numpy(cols).to(w.device)

    return run


def _host_arborescence(w: torch.Tensor) -> Callable[[], object]:
    def run() -> torch.Tensor:
        flat = w.to("cpu", torch.float64).numpy()
        return torch.from_numpy(np.stack([max_arborescence(m, 0) for m in flat])).to(w.device)

    return run


def bench(device: torch.device, batch: int, sizes: list[int], rounds: int, budget_s: float) -> list[dict[str, Any]]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        w = torch.randn(batch, n, n, generator=gen, dtype=torch.float64).to(device)
        cases = {
            "permutation": (_host_assignment(w), lambda sf, w=w: max_assignment(w, sync_free=sf)),
            "arborescence": (_host_arborescence(w), lambda sf, w=w: max_arborescence_batched(w, 0, sync_free=sf)),
        }
        for structure, (host, ours) in cases.items():
            fns = {"host": host, "torch_sync_free": lambda ours=ours: ours(True)}
            if device.type == "cpu":
                fns["torch_early_exit"] = lambda ours=ours: ours(False)
            ms = time_interleaved(fns, device, rounds, budget_s)
            row = {"structure": structure, "batch": batch, "n": n, "ms": ms,
                   "ops_sync_free": count_ops(lambda ours=ours: ours(True)),
                   "torch_over_host": {k: v / ms["host"] for k, v in ms.items() if k != "host"}}
            rows.append(row)
            print(f"{structure:12s} {batch} x {n:3d}: " + ", ".join(f"{k} {v:8.2f} ms" for k, v in ms.items())
                  + f"; {row['ops_sync_free']} ops per sync-free call")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget-s", type=float, default=60.0, help="stop a comparison's rounds after this")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default one)")
    parser.add_argument("--out", default=None, help=f"record path (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--quick", action="store_true", help="smoke run (batch 4, n 4 and 6): no record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.quick:
        args.batch, args.sizes, args.rounds, args.budget_s = 4, [4, 6], 2, 5.0
    rows = bench(device, args.batch, args.sizes, args.rounds, args.budget_s)
    return write_device_bench_record("hard_solvers", device, DEFAULT_OUT, args.out, args.quick, rounds=args.rounds,
                                     results=rows)


if __name__ == "__main__":
    main()
