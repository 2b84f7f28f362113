"""Time the NRI graph-layout generator against the reference procedure.

Reference (re-implemented here after Paulus et al.'s released generator): per simulation, i.i.d. Gumbel edge
weights, a Python Kruskal with union-find for the maximum spanning tree, an ``nx.Graph``, and one
``networkx.spring_layout(G, pos=pos, iterations=1, threshold=1e-10, center=(0, 0))`` call per frame.
Ours: ``experiments.nri.data.generate_split`` (batched Prim + batched spring step in NumPy).

    python benchmarks/bench_nri_data.py                      # T=10: reference on 1,000 sims, ours on 70,000
    python benchmarks/bench_nri_data.py --timesteps 20 --ref-sims 500 --json results/nri/bench_data_T20.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments.common.runtime import hardware
from experiments.nri.data import generate_split, networkx_trajectory


def kruskal_max_tree(weights: np.ndarray, n: int) -> np.ndarray:
    """Python Kruskal (union-find) on the upper-triangle weights, as the released generator does per graph."""
    iu, ju = np.triu_indices(n, k=1)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    adj = np.zeros((n, n), dtype=np.uint8)
    added = 0
    for e in np.argsort(-weights):
        a, b = find(int(iu[e])), find(int(ju[e]))
        if a != b:
            parent[a] = b
            adj[iu[e], ju[e]] = adj[ju[e], iu[e]] = 1
            added += 1
            if added == n - 1:
                break
    return adj


def reference(num: int, n: int, timesteps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    locs = np.empty((num, timesteps, n, 2))
    trees = np.empty((num, n, n), dtype=np.uint8)
    for s in range(num):
        w = rng.gumbel(size=n * (n - 1) // 2)
        trees[s] = kruskal_max_tree(w, n)
        locs[s] = networkx_trajectory(trees[s], rng.standard_normal((n, 2)), timesteps)
    return locs, trees


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timesteps", type=int, default=10)
    ap.add_argument("--vertices", type=int, default=10)
    ap.add_argument("--ref-sims", type=int, default=1000, help="simulations timed with the reference procedure")
    ap.add_argument("--sims", type=int, default=70000, help="simulations timed with ours (the full 50k/10k/10k)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    t0 = time.perf_counter()
    reference(args.ref_sims, args.vertices, args.timesteps, seed=0)
    ref_s = time.perf_counter() - t0
    ref_per_sim = ref_s / args.ref_sims

    t0 = time.perf_counter()
    generate_split(args.sims, args.vertices, args.timesteps, seed=42, split="train", progress=False)
    ours_s = time.perf_counter() - t0
    ours_per_sim = ours_s / args.sims

    # the two agree on the same trees and initial positions (the test checks this to 1e-6 too)
    rng = np.random.default_rng(1)
    from experiments.nri.data import max_spanning_tree, simulate

    w = rng.gumbel(size=(8, args.vertices, args.vertices))
    w = np.triu(w, 1) + np.triu(w, 1).transpose(0, 2, 1)
    adj = max_spanning_tree(w)
    init = rng.standard_normal((8, args.vertices, 2))
    ours = simulate(adj, init, args.timesteps)
    err = max(np.abs(networkx_trajectory(adj[i], init[i], args.timesteps) - ours[i]).max() for i in range(8))

    out = {
        "timesteps": args.timesteps, "vertices": args.vertices,
        "reference_ms_per_sim": round(1e3 * ref_per_sim, 4), "reference_sims_timed": args.ref_sims,
        "reference_70k_s_extrapolated": round(70000 * ref_per_sim, 1),
        "ours_ms_per_sim": round(1e3 * ours_per_sim, 5), "ours_sims_timed": args.sims,
        "ours_70k_s": round(70000 * ours_per_sim, 2),
        "speedup": round(ref_per_sim / ours_per_sim, 1),
        "max_abs_diff_vs_networkx": float(err),
        "numpy": np.__version__, "hardware": hardware(),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
