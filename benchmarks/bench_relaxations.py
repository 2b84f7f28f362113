"""Benchmark the sst relaxations against re-implementations of the algorithms in the paper's released code, and
against pytorch-struct where it computes the same quantity.

Baselines (re-implemented here from their maths, measured in the same process as ours):

- ``topk_numpy_fd``: k-subset marginals by a NumPy log-space DP with a Python loop over the tokens (forward and
  backward recursions), differentiated by central finite differences in the direction of the upstream gradient
  (two more DP runs), as the released L2X code does;
- ``kruskal_torch``: batched Kruskal in PyTorch with a Python loop over the edges sorted by weight (component
  labels relabelled edge by edge);
- ``slogdet_double_grad``: spanning-tree edge marginals as ``autograd.grad(create_graph=True)`` of ``slogdet`` of
  the reduced Laplacian (with the same max-shift and clipping at 15), then backward through that;
- pytorch-struct (``pip install torch-struct``, optional): ``NonProjectiveDependencyCRF(..., multiroot=True)``'s
  marginals (one ``inverse`` of the Laplacian, autograd for the backward; its weights get ``+ 1e-5``) for
  arborescences, against ``sst.Arborescence``.

Ours: ``sst.TopK(k).relax`` (exp_family_entropy), ``sst.SpanningTree().argmax`` (Prim), ``sst.SpanningTree().relax``
(the exact default: one batched inverse with a closed-form backward where its error bound allows, the log-space
elimination for the other graphs; and with ``max_range=15``, the released clip) and ``sst.Arborescence().relax``.
Also reports how each solver scales with the number of tokens / nodes and the batch size, and CorrelatedTopK and
the other TopK regularizers.

    python benchmarks/bench_relaxations.py --threads 1        # CPU, writes results/bench/relaxations_cpu.json
    python benchmarks/bench_relaxations.py --device cuda      # GPU (when available)
    python benchmarks/bench_relaxations.py --quick            # seconds; smoke test

Times are medians over repeats after warm-up (forward + backward where stated), CUDA-synchronised on GPU; the
baseline-vs-sst comparisons interleave the two sides call by call (`time_pair`), so load changes hit both alike.
The record holds the commit, the hardware and the thread count; each comparison row also gives the lower
quartiles (a loaded machine inflates the medians of both sides) and, for the tree relaxations, how many graphs
took the exact elimination instead of the one inverse.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp

import sst
from experiments.common.runtime import git_commit, hardware, write_bench_record
from sst.structures import _laplacian as laplacian

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------- baselines


NEG_INF = float(np.finfo(np.float32).max)  # the released code's "log 0" is -float32 max


def topk_marginals_numpy(theta: np.ndarray, k: int) -> np.ndarray:
    """k-subset marginals by forward and backward log-space messages, a Python loop over tokens and over counts
    (one NumPy call per (token, count) pair, batched over rows only), as in the released code. theta (B, n)."""
    b, n = theta.shape
    fwd = np.full((b, n, k + 1), -NEG_INF)
    fwd[:, 0, 0] = 0.0
    fwd[:, 0, 1] = theta[:, 0]
    for i in range(1, n):
        for j in range(k + 1):
            use = fwd[:, i - 1, j - 1] + theta[:, i] if j > 0 else -NEG_INF
            fwd[:, i, j] = np.logaddexp(fwd[:, i - 1, j], use)
    bwd = np.full((b, n, k + 1), -NEG_INF)
    bwd[:, n - 1, k] = 0.0
    for i in range(n - 2, -1, -1):
        for j in range(k + 1):
            use = bwd[:, i + 1, j + 1] + theta[:, i + 1] if j < k else -NEG_INF
            bwd[:, i, j] = np.logaddexp(bwd[:, i + 1, j], use)
    start = np.full((b, 1, k + 1), -NEG_INF)
    start[:, :, 0] = 0.0
    before = np.concatenate([start, fwd[:, :-1, :]], axis=1)  # messages of the tokens before i
    skip = logsumexp(before + bwd, axis=2)
    take = logsumexp(before[:, :, :-1] + bwd[:, :, 1:], axis=2) + theta
    return np.exp(take - np.logaddexp(skip, take))


def topk_numpy_fd(theta: np.ndarray, g: np.ndarray, k: int, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Forward marginals and the finite-difference backward ``(mu(theta + eps g) - mu(theta - eps g)) / 2 eps``."""
    mu = topk_marginals_numpy(theta, k)
    grad = (topk_marginals_numpy(theta + eps * g, k) - topk_marginals_numpy(theta - eps * g, k)) / (2 * eps)
    return mu, grad


def _find_root_batched(parents: torch.Tensor, node: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Union-find root of ``node`` in every graph, following parents n - 1 times, then compressing the path."""
    bsz = parents.shape[0]
    rows = torch.arange(bsz, device=parents.device)
    path = torch.zeros_like(parents)
    path[:, 0] = node
    root = parents[rows, node]
    for i in range(1, n):
        path[:, i] = root
        root = parents[rows, root]
    for i in range(1, n):
        parents[rows, path[:, i]] = root
    return parents, root


def kruskal_torch(w: torch.Tensor) -> torch.Tensor:
    """Batched maximum spanning tree: edges sorted by weight, then a Python loop over them with a batched union-find
    (union by size, path compression), as the released PyTorch Kruskal. w (B, n, n) symmetric -> adjacency."""
    bsz, n, _ = w.shape
    dev = w.device
    iu, ju = torch.triu_indices(n, n, 1, device=dev)
    order = w[:, iu, ju].argsort(dim=-1, descending=True)
    rows = torch.arange(bsz, device=dev)
    size = torch.ones(bsz, n, device=dev)
    parents = torch.arange(n, device=dev).repeat(bsz, 1)
    x = torch.zeros_like(w)
    for e in range(order.shape[1]):
        i, j = iu[order[:, e]], ju[order[:, e]]
        parents, ri = _find_root_batched(parents, i, n)
        parents, rj = _find_root_batched(parents, j, n)
        join = ri != rj
        i_big = size[rows, ri] > size[rows, rj]
        big, small = torch.where(i_big, ri, rj), torch.where(i_big, rj, ri)
        size[rows, big] = torch.where(join, size[rows, big] + size[rows, small], size[rows, big])
        parents[rows, small] = torch.where(join, big, parents[rows, small])
        x[rows, i, j] = torch.where(join, 1.0, x[rows, i, j])
        x[rows, j, i] = torch.where(join, 1.0, x[rows, j, i])
    return x


def slogdet_marginals(edge_logits: torch.Tensor, n: int, max_range: float = 15.0) -> torch.Tensor:
    """Edge marginals (B, M) as ``autograd.grad(create_graph=True)`` of slogdet of the Laplacian with the row and
    column of one endpoint of the heaviest edge removed, logits clipped to within max_range of their maximum."""
    bsz = edge_logits.shape[0]
    iu, ju = torch.triu_indices(n, n, 1, device=edge_logits.device)
    m = edge_logits.amax(-1, keepdim=True)
    logits = torch.maximum(edge_logits, m - max_range)
    c = logits.amax(-1, keepdim=True)
    removed = iu[logits.argmax(-1)]
    weights = torch.exp(logits - c)
    W = torch.zeros(bsz, n, n, dtype=logits.dtype, device=logits.device)
    W[:, iu, ju] = weights
    W[:, ju, iu] = weights
    L = torch.diag_embed(W.sum(-1)) - W
    keep = torch.ones(bsz, n, n, dtype=torch.bool, device=logits.device)
    keep[torch.arange(bsz), removed, :] = False
    keep[torch.arange(bsz), :, removed] = False
    sub = L[keep].view(bsz, n - 1, n - 1)
    logz = (torch.linalg.slogdet(sub)[1] + (n - 1) * c.flatten()).sum()
    return torch.autograd.grad(logz, edge_logits, create_graph=True)[0]


# ---------------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, out: list[float]) -> None:
    """Append the wall time (s) of one synchronised call of ``fn`` to ``out``."""
    t0 = time.perf_counter()
    fn()
    _sync(device)
    out.append(time.perf_counter() - t0)


def timeit(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2,
           budget_s: float = 20.0) -> float:
    """Median wall time of ``fn()`` in milliseconds (fewer repeats when one call is slow)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        _timed(fn, device, times)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return 1e3 * statistics.median(times)


def fwd_bwd(S: sst.Structure, w: torch.Tensor, tau: float, regularizer: str | None = None) -> Callable[[], object]:
    """Closure: relax (forward) and backward of a fixed random projection of the output."""
    g = torch.randn_like(w)

    def run() -> None:
        x = w.detach().requires_grad_()
        y = S.relax(x, tau, regularizer)
        (y * g).sum().backward()

    return run


def time_pair(base: Callable[[], object], ours: Callable[[], object], device: torch.device, rounds: int,
              per_round: int, warmup: int = 2, budget_s: float = 60.0,
              quartiles: dict | None = None) -> tuple[float, float]:
    """Median wall times (ms) of ``base()`` and ``ours()``, measured interleaved: each round times one call of
    ``base`` then ``per_round`` calls of ``ours``, so that a change in the machine's load during the measurement
    hits both sides alike and the ratio stays meaningful on a shared machine. ``quartiles``, when given, receives
    the lower quartiles (ms) as ``baseline_q25_ms`` / ``ours_q25_ms``."""
    for _ in range(warmup):
        base()
        ours()
    _sync(device)
    tb: list[float] = []
    to: list[float] = []
    start = time.perf_counter()
    for _ in range(rounds):
        _timed(base, device, tb)
        for _ in range(per_round):
            _timed(ours, device, to)
        if time.perf_counter() - start > budget_s and len(tb) >= 3:
            break
    if quartiles is not None:
        quartiles["baseline_q25_ms"] = 1e3 * _quantile(tb, 0.25)
        quartiles["ours_q25_ms"] = 1e3 * _quantile(to, 0.25)
    return 1e3 * statistics.median(tb), 1e3 * statistics.median(to)


def _quantile(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * (len(ys) - 1) + 0.5))]


def _compare(name: str, shape: str, baseline: str, base: Callable[[], object], ours: Callable[[], object],
             device: torch.device, rounds: int, per_round: int, **extra: object) -> dict:
    """One comparison row: interleaved medians, lower quartiles and the speed-up of the medians."""
    q: dict = {}
    t_base, t_ours = time_pair(base, ours, device, rounds, per_round, quartiles=q)
    return dict(name=name, shape=shape, baseline=baseline, baseline_ms=t_base, ours_ms=t_ours,
                speedup=t_base / t_ours, speedup_q25=q["baseline_q25_ms"] / q["ours_q25_ms"], **q, **extra)


# ---------------------------------------------------------------------------------------------------- benchmarks


def bench_topk(device: torch.device, quick: bool, repeats: int) -> tuple[list[dict], list[dict]]:
    comparisons, scaling = [], []
    k, tau = 10, 0.5
    b, n = (8, 100) if quick else (40, 350)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(b, n, generator=gen)
    g = torch.randn(b, n, generator=gen)
    theta_np, g_np = (w / tau).double().numpy(), g.double().numpy()
    # correctness of the comparison: same marginals and (up to finite-difference error) the same backward
    mu_ref, grad_ref = topk_numpy_fd(theta_np, g_np, k)
    x = w.double().requires_grad_()
    mu = sst.TopK(k).relax(x, tau)
    (mu * g.double()).sum().backward()
    err_mu = float(np.abs(mu.detach().numpy() - mu_ref).max())
    err_grad = float(np.abs(x.grad.numpy() * tau - grad_ref).max())
    wd = w.to(device)
    comparisons.append(_compare("TopK(k=10) exp_family_entropy, forward+backward", f"{b} x {n} tokens",
                                "NumPy log-space DP (Python loop) + central finite differences",
                                lambda: topk_numpy_fd(theta_np, g_np, k), fwd_bwd(sst.TopK(k), wd, tau), device,
                                max(3, repeats // 4), 4, max_abs_diff_marginals=err_mu,
                                max_abs_diff_backward_vs_fd=err_grad))
    sizes = [(40, 100), (40, 350)] if quick else [(40, 100), (40, 350), (40, 1000), (40, 2000), (1, 350), (10, 350),
                                                  (160, 350)]
    for bb, nn in sizes:
        wd = torch.randn(bb, nn, generator=gen).to(device)
        for reg in (sst.TopK.regularizers if not quick else ("exp_family_entropy",)):
            if reg != "exp_family_entropy" and (bb, nn) not in [(40, 350), (40, 2000)]:
                continue
            scaling.append(dict(solver=f"TopK(10).relax {reg} fwd+bwd", batch=bb, n=nn,
                                ms=timeit(fwd_bwd(sst.TopK(10), wd, tau, reg), device, repeats)))
    for kk in ([5] if quick else [5, 10, 15]):
        bb, nn = (8, 100) if quick else (40, 350)
        wd = torch.randn(bb, 2 * nn - 1, generator=gen).to(device)
        scaling.append(dict(solver=f"CorrelatedTopK({kk}).relax fwd+bwd", batch=bb, n=nn,
                            ms=timeit(fwd_bwd(sst.CorrelatedTopK(kk), wd, tau), device, max(3, repeats // 2))))
        scaling.append(dict(solver=f"CorrelatedTopK({kk}).argmax", batch=bb, n=nn,
                            ms=timeit(lambda wd=wd, kk=kk: sst.CorrelatedTopK(kk).argmax(wd), device, repeats)))
    return comparisons, scaling


def _sym(b: int, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    w = torch.randn(b, n, n, generator=gen)
    return (w + w.transpose(-1, -2)).to(device)


def _tree_fallbacks(S: sst.Structure, w: torch.Tensor, tau: float) -> int:
    """How many graphs of ``w`` the exact relax of ``S`` (SpanningTree or Arborescence, max_range None) sends to
    the log-space elimination (the others take the one inverse)."""
    n = w.shape[-1]
    valid = ~torch.eye(n, dtype=torch.bool, device=w.device)
    if isinstance(S, sst.Arborescence):
        valid[:, S.root % n] = False
        theta, root = (w / tau).to(S.solve_dtype), S.root % n
    else:
        theta, root = (0.5 * (w + w.transpose(-1, -2)) / tau).to(S.solve_dtype), None
    fallback = laplacian._OneInverse.apply(theta.reshape(-1, n, n), valid, root, root is None,
                                           laplacian.fast_tolerance(w.dtype))[2]
    return int(fallback.sum())


def bench_spanning_tree(device: torch.device, quick: bool, repeats: int) -> tuple[list[dict], list[dict]]:
    comparisons, scaling = [], []
    gen = torch.Generator().manual_seed(1)
    S = sst.SpanningTree()
    with sst.checks(False):  # the symmetry / NaN checks sync with the device; not part of the solver
        for n in ([10] if quick else [10, 20]):
            w = _sym(128, n, gen, device)
            assert torch.equal(kruskal_torch(w), S.argmax(w))
            comparisons.append(_compare(f"SpanningTree argmax, {n} nodes", f"128 graphs x {n} nodes",
                                        "batched Kruskal, Python loop over sorted edges",
                                        lambda w=w: kruskal_torch(w), lambda w=w: S.argmax(w), device,
                                        max(3, repeats // 2), 2))
        for n in ([10] if quick else [10, 30]):
            iu, ju = torch.triu_indices(n, n, 1, device=device)
            w = _sym(128, n, gen, device).double()
            edge = w[:, iu, ju].clone().requires_grad_()
            ref = slogdet_marginals(edge / 2.0, n)  # tau = 2: the clip (15) is inactive, both exact
            diff = float((ref - S.relax(w, 2.0)[:, iu, ju]).abs().max().detach())
            w = w.float()
            edge = edge.detach().float()
            gproj = torch.randn_like(edge)

            def base(edge: torch.Tensor = edge, gproj: torch.Tensor = gproj, n: int = n) -> None:
                x = edge.detach().requires_grad_()
                (slogdet_marginals(x / 0.5, n) * gproj).sum().backward()

            for name, T in (("exact default", S), ("max_range=15, as released", sst.SpanningTree(max_range=15.0))):
                extra = dict(max_abs_diff_marginals=diff) if T is S else {}
                if T is S:
                    extra["graphs_to_elimination"] = _tree_fallbacks(S, w, 0.5)
                comparisons.append(_compare(
                    f"SpanningTree exp_family_entropy ({name}), forward+backward, {n} nodes",
                    f"128 graphs x {n} nodes", "autograd.grad(create_graph=True) of slogdet, then backward", base,
                    fwd_bwd(T, w, 0.5), device, repeats, 1, **extra))
        sizes = [(128, 10), (128, 20)] if quick else [(128, 10), (128, 20), (128, 50), (128, 100), (1, 20),
                                                      (32, 20), (512, 20)]
        for b, n in sizes:
            w = _sym(b, n, gen, device)
            scaling.append(dict(solver="SpanningTree.argmax (Prim)", batch=b, n=n,
                                ms=timeit(lambda w=w: S.argmax(w), device, repeats)))
            scaling.append(dict(solver="SpanningTree.relax fwd+bwd", batch=b, n=n,
                                ms=timeit(fwd_bwd(S, w, 0.5), device, repeats),
                                graphs_to_elimination=_tree_fallbacks(S, w, 0.5)))
            if not quick and n <= 20 and b <= 128:
                scaling.append(dict(solver="baseline Kruskal (Python loop)", batch=b, n=n,
                                    ms=timeit(lambda w=w: kruskal_torch(w), device, max(3, repeats // 4))))
    return comparisons, scaling


def torch_struct_marginals(w: torch.Tensor, tau: float) -> torch.Tensor | None:
    """Arborescence marginals (B, n, n) (root 0, ``[i, j]`` the edge i -> j) by pytorch-struct's
    ``NonProjectiveDependencyCRF(multiroot=True)`` (None when torch-struct is not installed): its N = n - 1 words
    are our nodes 1..n-1, its diagonal the edges out of the root."""
    try:
        from torch_struct import NonProjectiveDependencyCRF
    except ImportError:
        return None
    n = w.shape[-1]
    theta = w / tau
    lp = theta[:, 1:, 1:] - torch.diag_embed(torch.diagonal(theta[:, 1:, 1:], dim1=-2, dim2=-1)) \
        + torch.diag_embed(theta[:, 0, 1:])
    m = NonProjectiveDependencyCRF(lp, multiroot=True).marginals  # (B, N, N), root arcs on the diagonal
    out = torch.zeros(w.shape[0], n, n, dtype=m.dtype, device=m.device)
    out[:, 1:, 1:] = m - torch.diag_embed(torch.diagonal(m, dim1=-2, dim2=-1))
    out[:, 0, 1:] = torch.diagonal(m, dim1=-2, dim2=-1)
    return out


def bench_arborescence(device: torch.device, quick: bool, repeats: int) -> tuple[list[dict], list[dict]]:
    """``sst.Arborescence(0).relax`` against pytorch-struct's matrix-tree marginals (the same law; theirs adds
    1e-5 to every edge weight), forward + backward of a fixed projection; float32 weights N(0, 1), tau 0.5."""
    comparisons: list[dict] = []
    gen = torch.Generator().manual_seed(2)
    A = sst.Arborescence(0)
    w0 = torch.randn(2, 5, 5, generator=gen).to(device)
    if torch_struct_marginals(w0, 1.0) is None:
        print("pytorch-struct not installed (pip install torch-struct): arborescence comparison skipped")
        return comparisons, []
    with sst.checks(False):
        for n in ([10] if quick else [10, 30]):
            w = torch.randn(128, n, n, generator=gen).to(device)
            diff = float((torch_struct_marginals(w.double(), 2.0) - A.relax(w.double(), 2.0)).abs().max())
            g = torch.randn_like(w)

            def base(w: torch.Tensor = w, g: torch.Tensor = g) -> None:
                x = w.detach().requires_grad_()
                (torch_struct_marginals(x, 0.5) * g).sum().backward()

            comparisons.append(_compare(
                f"Arborescence exp_family_entropy (exact default), forward+backward, {n} nodes",
                f"128 graphs x {n} nodes", "pytorch-struct NonProjectiveDependencyCRF(multiroot=True).marginals",
                base, fwd_bwd(A, w, 0.5), device, repeats, 1, max_abs_diff_marginals_tau2=diff,
                graphs_to_elimination=_tree_fallbacks(A, w, 0.5)))
    return comparisons, []


# ---------------------------------------------------------------------------------------------------- report


def markdown(comparisons: list[dict], scaling: list[dict]) -> str:
    lines = ["| benchmark | shape | baseline | baseline (ms) | sst (ms) | speed-up (medians) | speed-up (lower "
             "quartiles) |", "|---|---|---|---:|---:|---:|---:|"]
    for c in comparisons:
        lines.append(f"| {c['name']} | {c['shape']} | {c['baseline']} | {c['baseline_ms']:.2f} | {c['ours_ms']:.2f} "
                     f"| {c['speedup']:.1f}x | {c['speedup_q25']:.1f}x |")
    lines += ["", "| solver | batch | n | ms |", "|---|---:|---:|---:|"]
    for s in scaling:
        lines.append(f"| {s['solver']} | {s['batch']} | {s['n']} | {s['ms']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 20, quick 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--out", default=None, help="JSON path (default results/bench/relaxations_<device>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 20)
    t0 = time.perf_counter()
    comp_topk, scale_topk = bench_topk(device, args.quick, repeats)
    comp_st, scale_st = bench_spanning_tree(device, args.quick, repeats)
    comp_arb, _ = bench_arborescence(device, args.quick, repeats)
    comparisons, scaling = comp_topk + comp_st + comp_arb, scale_topk + scale_st
    table = markdown(comparisons, scaling)
    print(table)
    record = {"command": "python " + shlex.join([sys.argv[0], *(argv or sys.argv[1:])]), "commit": git_commit(),
              "quick": args.quick, "repeats": repeats, "hardware": hardware(device),
              "wall_time_s": time.perf_counter() - t0, "comparisons": comparisons, "scaling": scaling,
              "markdown": table}
    write_bench_record(args.out, ROOT / "results" / "bench" / f"relaxations_{device.type}.json", record, args.quick)
    return record


if __name__ == "__main__":
    main()
