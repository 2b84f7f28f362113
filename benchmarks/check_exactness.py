"""Worst error of SpanningTree / Arborescence marginals (and their gradients) against brute-force enumeration, and
of Permutation's Sinkhorn (row/column residual, and distance to a tight reference), over random weights.

    python benchmarks/check_exactness.py                 # float64 and float32 regimes of docs/library.md
    python benchmarks/check_exactness.py --trials 200    # more instances per cell
    python benchmarks/check_exactness.py --timing        # only: SpanningTree relax fwd+bwd times (128 graphs)

Weights: ``w / tau`` drawn N(0, 1), rescaled per graph to the given spread (max - min over the edges), times tau.
Gradient: of ``<c, mu>`` for a random c, against autograd of the brute-force log-partition, relative to the
largest entry of the brute-force gradient. Prints one line per (structure, dtype, tau, spread) with the worst case.
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch

import sst


def _spread_weights(shape: tuple[int, ...], spread: float, valid: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    z = 0.5 * (z + z.transpose(-1, -2)) if valid is None else z
    v = valid if valid is not None else ~torch.eye(shape[-1], dtype=torch.bool)
    zmax = z.masked_fill(~v, -math.inf).amax(dim=(-2, -1), keepdim=True)
    zmin = z.masked_fill(~v, math.inf).amin(dim=(-2, -1), keepdim=True)
    return ((z - zmin) / (zmax - zmin) * spread).masked_fill(~v, 0.0)


def brute(S, w: torch.Tensor, tau: float, directed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force marginals ``(..., n, n)`` and covariance ``(..., n, n, n, n)`` of the edge indicators at
    ``w / tau`` (float64). The covariance is summed without cancellation: ``x_e - mu_e`` is ``P(e not in x)``
    (summed directly) when e is in x and ``-mu_e`` otherwise; an undirected edge (i, j) appears at both (i, j)
    and (j, i)."""
    V = S.enumerate(w.shape[-1], dtype=w.dtype)  # (M, n, n)
    p = torch.softmax(S.score(w.unsqueeze(-3), V) / tau, -1)  # (..., M)
    mu = torch.einsum("...m,mij->...ij", p, V)
    nu = torch.einsum("...m,mij->...ij", p, 1 - V)
    d = torch.where(V.bool(), nu.unsqueeze(-3), -mu.unsqueeze(-3))  # (..., M, n, n)
    cov = torch.einsum("...m,...mij,...mkl->...ijkl", p, d, d)
    return mu, cov


def tree_check(S, n: int, tau: float, spread: float, trials: int, dtype: torch.dtype, gen: torch.Generator,
               directed: bool) -> tuple[float, float, float, bool]:
    """Worst ``|mu - mu_brute|``; worst relative gradient error over the instances whose brute-force gradient
    reaches 1e-6 / tau; worst absolute error of the gradient times tau (i.e. of ``d mu / d (w / tau)``); whether
    every output was finite."""
    valid = None
    if directed:
        valid = ~torch.eye(n, dtype=torch.bool)
        valid[:, S.root % n] = False
    theta = _spread_weights((trials, n, n), spread, valid, gen)
    w = theta * tau
    mu_bf, cov = brute(S, w, tau, directed)
    c = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    # d <c, mu> / d w_kl = sum_ij c_ij Cov(x_ij, x_kl) / tau; relax splits an undirected edge's gradient evenly
    g_bf = torch.einsum("...ij,...ijkl->...kl", c, cov) / tau
    if not directed:
        g_bf = 0.5 * g_bf
    wd = w.to(dtype).requires_grad_(True)
    mu = S.relax(wd, tau)
    (g,) = torch.autograd.grad((mu.double() * c).sum(), wd)
    err = (mu.double() - mu_bf).abs().amax().item()
    scale = g_bf.abs().flatten(-2).amax(-1)
    gabs = (g.double() - g_bf).abs().flatten(-2).amax(-1)
    big = scale >= 1e-6 / tau  # relative error where the gradient is not itself negligible
    grel = (gabs[big] / scale[big]).amax().item() if bool(big.any()) else 0.0
    finite = bool(torch.isfinite(mu).all() and torch.isfinite(g).all())
    return err, grel, tau * gabs.amax().item(), finite


def _reference_sinkhorn():
    """This checkout's Sinkhorn solver, loaded by path (so that the script can measure another sst on PYTHONPATH
    against the same reference)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "sst" / "structures" / "_sinkhorn.py"
    spec = importlib.util.spec_from_file_location("_ref_sinkhorn", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def perm_check(n: int, tau: float, trials: int, gen: torch.Generator) -> tuple[float, float, float, int]:
    """Worst residual, worst |P - P_ref|, share of instances off by more than 1e-6, number of warnings."""
    w = torch.randn(trials, n, n, generator=gen, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = sst.Permutation().relax(w, tau)
    resid = max((p.sum(-1) - 1).abs().amax().item(), (p.sum(-2) - 1).abs().amax().item())
    ref = _reference_sinkhorn().sinkhorn(w / tau, tol=1e-13, max_iter=500)
    off = (p - ref).abs().flatten(-2).amax(-1)
    return resid, off.max().item(), (off > 1e-6).double().mean().item(), len(caught)


def timing(reps: int = 30) -> None:
    """Median ms of ``SpanningTree.relax`` forward + backward, 128 float32 graphs, tau 0.5, checks off, one thread:
    the default (exact) and ``max_range=15`` (the NRI setting)."""
    import statistics
    import time

    for n in (5, 10, 20):
        row = [f"SpanningTree relax fwd+bwd, 128 graphs x {n} nodes:"]
        for label, S in (("default", sst.SpanningTree()), ("max_range=15", sst.SpanningTree(max_range=15.0))):
            g = torch.Generator().manual_seed(0)
            w = torch.randn(128, n, n, generator=g)
            w = w + w.transpose(-1, -2)
            c = torch.randn(128, n, n, generator=g)
            ts = []
            with sst.checks(False):
                for _ in range(reps + 3):
                    x = w.clone().requires_grad_(True)
                    t = time.perf_counter()
                    (S.relax(x, 0.5) * c).sum().backward()
                    ts.append(time.perf_counter() - t)
            row.append(f"{label} {1e3 * statistics.median(ts[3:]):.2f} ms")
        print(*row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="random instances per cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing", action="store_true", help="only time SpanningTree.relax (default vs max_range=15)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.timing:
        timing()
        return
    gen = torch.Generator().manual_seed(args.seed)
    print("structure dtype tau spread n : worst |mu - brute| , worst grad rel err (|grad| >= 1e-6/tau) , "
          "worst tau * |grad - brute| , all finite")
    for name, S, directed in (("SpanningTree", sst.SpanningTree(), False), ("Arborescence", sst.Arborescence(0), True)):
        for dtype, spreads in ((torch.float64, (10, 20, 30, 60, 200)), (torch.float32, (6, 12))):
            for tau in (0.05, 0.1, 1.0):
                for spread in spreads:
                    worst = [0.0, 0.0, 0.0, True]
                    for n in (3, 4, 5):
                        e, g, ga, f = tree_check(S, n, tau, spread, args.trials, dtype, gen, directed)
                        worst = [max(worst[0], e), max(worst[1], g), max(worst[2], ga), worst[3] and f]
                    print(f"{name} {str(dtype)[6:]} tau={tau} spread={spread} n=3-5 : {worst[0]:.2e} , "
                          f"{worst[1]:.2e} , {worst[2]:.2e} , {worst[3]}")
    print("Permutation float64, w ~ N(0,1): worst row/col residual, worst |P - P_ref|, share off by > 1e-6, "
          "warnings")
    for tau in (0.05, 0.1, 1.0):
        for n in (3, 5, 10, 50):
            r, d, share, nw = perm_check(n, tau, args.trials if n <= 10 else 10, gen)
            print(f"Permutation tau={tau} n={n} : {r:.2e} , {d:.2e} , {share:.0%} , {nw}")


if __name__ == "__main__":
    main()
