"""Compiled CPU kernels (numba) for the solvers of :mod:`sst.structures`; chosen by :mod:`sst.structures._backend`.

- k-subset marginals (:mod:`sst.structures._ksubset`): the same shifted linear-space recursions as the PyTorch
  path, written as loops over items with the batch innermost, so that each step runs over contiguous memory
  and nothing but the (m, n, N) suffix table leaves the cache. Inputs are the "add" / "drop" weights laid out
  as ``(2, n, N)`` (set, item, batch); every output has that layout too.
- Prim's maximum spanning tree (:class:`sst.structures.spanning_tree.SpanningTree`): the batched PyTorch loop's
  exact rules (first maximum wins, strict improvement, weights clamped below at the dtype's lowest value) as
  O(n^2) scalar loops per graph, writing the adjacency matrix itself.

Imported lazily: numba is an optional dependency, and the PyTorch path is used (and tested against these kernels)
when it is missing.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@nb.njit(**_JIT)
def _totals(x, dx, m, tangent):  # pragma: no cover - compiled
    """``e[s, p]`` = e_p of set s's weights over all items, p = 0..m, shape (2, m + 1, N); ``de`` its tangent
    in the direction ``dx`` when ``tangent`` (zeros otherwise)."""
    _, n, N = x.shape
    e = np.zeros((2, m + 1, N), dtype=x.dtype)
    de = np.zeros((2, m + 1, N), dtype=x.dtype)
    for s in range(2):
        for b in range(N):
            e[s, 0, b] = 1.0
        for i in range(n):
            for p in range(m, 0, -1):
                if tangent:
                    for b in range(N):
                        de[s, p, b] += dx[s, i, b] * e[s, p - 1, b] + x[s, i, b] * de[s, p - 1, b]
                for b in range(N):
                    e[s, p, b] += x[s, i, b] * e[s, p - 1, b]
    return e, de


@nb.njit(**_JIT)
def marginals_sets(x, m):  # pragma: no cover - compiled
    """Per-set marginals ``x_i sum_p pre_p(i) h_p(i) / T``, shape (2, n, N), of the weights x (2, n, N)."""
    _, n, N = x.shape
    e, _ = _totals(x, x, m, False)
    t = np.zeros(N, dtype=x.dtype)
    for r in range(m + 1):
        for b in range(N):
            t[b] += e[0, r, b] * e[1, r, b]
    mu = np.empty((2, n, N), dtype=x.dtype)
    h = np.empty((m, n, N), dtype=x.dtype)
    run = np.zeros((m, N), dtype=x.dtype)
    pre = np.zeros((m, N), dtype=x.dtype)
    acc = np.zeros(N, dtype=x.dtype)
    for s in range(2):
        o = 1 - s  # set s's coefficients are the other set's totals
        run[:] = 0.0  # run[p] = sum over the items after i of x_l h_{p+1}(l)
        for i in range(n - 1, -1, -1):
            for b in range(N):
                h[m - 1, i, b] = e[o, m, b]
            for p in range(m - 2, -1, -1):
                for b in range(N):
                    h[p, i, b] = e[o, p + 1, b] + run[p, b]
            for p in range(m - 1):
                for b in range(N):
                    run[p, b] += x[s, i, b] * h[p + 1, i, b]
        pre[:] = 0.0  # pre[p] = e_p of the items before i
        pre[0, :] = 1.0
        for i in range(n):
            acc[:] = 0.0
            for p in range(m):
                for b in range(N):
                    acc[b] += pre[p, b] * h[p, i, b]
            for b in range(N):
                mu[s, i, b] = x[s, i, b] * acc[b] / t[b]
            for p in range(m - 1, 0, -1):
                for b in range(N):
                    pre[p, b] += x[s, i, b] * pre[p - 1, b]
    return mu


@nb.njit(**_JIT)
def marginals_sets_tangent(x, dx, m):  # pragma: no cover - compiled
    """Tangent of :func:`marginals_sets` at x in the direction dx, shape (2, n, N) (forward recomputed)."""
    _, n, N = x.shape
    e, de = _totals(x, dx, m, True)
    t = np.zeros(N, dtype=x.dtype)
    dt = np.zeros(N, dtype=x.dtype)
    for r in range(m + 1):
        for b in range(N):
            t[b] += e[0, r, b] * e[1, r, b]
            dt[b] += de[0, r, b] * e[1, r, b] + e[0, r, b] * de[1, r, b]
    out = np.empty((2, n, N), dtype=x.dtype)
    h = np.empty((m, n, N), dtype=x.dtype)
    dh = np.empty((m, n, N), dtype=x.dtype)
    run = np.zeros((m, N), dtype=x.dtype)
    drun = np.zeros((m, N), dtype=x.dtype)
    pre = np.zeros((m, N), dtype=x.dtype)
    dpre = np.zeros((m, N), dtype=x.dtype)
    acc = np.zeros(N, dtype=x.dtype)
    dacc = np.zeros(N, dtype=x.dtype)
    for s in range(2):
        o = 1 - s
        run[:] = 0.0
        drun[:] = 0.0
        for i in range(n - 1, -1, -1):
            for b in range(N):
                h[m - 1, i, b] = e[o, m, b]
                dh[m - 1, i, b] = de[o, m, b]
            for p in range(m - 2, -1, -1):
                for b in range(N):
                    h[p, i, b] = e[o, p + 1, b] + run[p, b]
                    dh[p, i, b] = de[o, p + 1, b] + drun[p, b]
            for p in range(m - 1):
                for b in range(N):
                    run[p, b] += x[s, i, b] * h[p + 1, i, b]
                    drun[p, b] += dx[s, i, b] * h[p + 1, i, b] + x[s, i, b] * dh[p + 1, i, b]
        pre[:] = 0.0
        dpre[:] = 0.0
        pre[0, :] = 1.0
        for i in range(n):
            acc[:] = 0.0
            dacc[:] = 0.0
            for p in range(m):
                for b in range(N):
                    acc[b] += pre[p, b] * h[p, i, b]
                    dacc[b] += dpre[p, b] * h[p, i, b] + pre[p, b] * dh[p, i, b]
            for b in range(N):
                out[s, i, b] = (dx[s, i, b] * acc[b] + x[s, i, b] * dacc[b] - x[s, i, b] * acc[b] * dt[b] / t[b]) / t[b]
            for p in range(m - 1, 0, -1):
                for b in range(N):
                    dpre[p, b] += dx[s, i, b] * pre[p - 1, b] + x[s, i, b] * dpre[p - 1, b]
                    pre[p, b] += x[s, i, b] * pre[p - 1, b]
    return out


@nb.njit(**_JIT)
def prim_tree(w, lowest):  # pragma: no cover - compiled
    """Adjacency matrices (B, n, n) (0/1, w's dtype) of the maximum spanning trees of the symmetric weights
    w (B, n, n), grown from node 0 by the PyTorch loop's rules (first maximum wins, strict improvement, weights
    clamped below at ``lowest``). (Symmetrising here, or reading through a symmetrised copy, doubled the time.)"""
    B, n, _ = w.shape
    out = np.zeros((B, n, n), dtype=w.dtype)
    parent = np.zeros(n, dtype=np.int64)
    in_tree = np.zeros(n, dtype=np.bool_)
    best = np.empty(n, dtype=w.dtype)
    for b in range(B):
        in_tree[:] = False
        in_tree[0] = True
        parent[:] = 0
        for j in range(n):
            best[j] = max(w[b, 0, j], lowest)
        for _ in range(n - 1):
            v = -1
            for j in range(n):
                if not in_tree[j] and (v < 0 or best[j] > best[v]):
                    v = j
            in_tree[v] = True
            for j in range(n):
                r = max(w[b, v, j], lowest)
                if not in_tree[j] and r > best[j]:
                    best[j] = r
                    parent[j] = v
        for j in range(1, n):
            out[b, parent[j], j] = 1.0
            out[b, j, parent[j]] = 1.0
    return out


@nb.njit(**_JIT)
def _shifted_weights(theta, in_a, top2, cut):  # pragma: no cover - compiled
    """The "add" / "drop" weights (2, n, N) of :func:`sst.structures._ksubset._reference` from theta (N, n),
    the top-k mask ``in_a`` (N, n) and the k-th and (k+1)-th largest entries ``top2`` (N, 2), with the mask of
    unclipped weights. The threshold s is their midpoint; ``-inf`` entries ("never selected") get weight 0, and
    when fewer than k + 1 entries are finite s is the k-th (or 0 when fewer than k are: an input the checks
    reject; the result is then finite, not meaningful)."""
    N, n = theta.shape
    x = np.zeros((2, n, N), dtype=theta.dtype)
    live = np.zeros((2, n, N), dtype=np.bool_)
    s = np.empty(N, dtype=theta.dtype)
    for b in range(N):
        vk, vk1 = top2[b, 0], top2[b, 1]
        s[b] = 0.5 * (vk + vk1) if vk1 > -np.inf else (vk if vk > -np.inf else 0.0)
    for i in range(n):
        for b in range(N):
            if theta[b, i] == -np.inf:
                continue
            a = 1 if in_a[b, i] else 0
            d = s[b] - theta[b, i] if a else theta[b, i] - s[b]  # <= 0
            x[a, i, b] = np.exp(max(d, -cut))
            live[a, i, b] = d > -cut
    return x, live


@nb.njit(**_JIT)
def ksubset_marginals(theta, in_a, top2, m, cut):  # pragma: no cover - compiled
    """``P(i in S)`` (N, n) for theta (N, n), given the top-k mask ``in_a`` and the k-th and (k+1)-th largest
    entries ``top2`` (N, 2) (the shifted reference point of :func:`sst.structures._ksubset._reference`); exactly 0
    at ``-inf`` entries. Also returns the weights and their unclipped mask of :func:`_shifted_weights`
    (2, n, N), which :func:`ksubset_marginals_vjp` reuses."""
    N, n = theta.shape
    x, live = _shifted_weights(theta, in_a, top2, cut)
    mu = marginals_sets(x, m)
    out = np.empty((N, n), dtype=theta.dtype)
    for b in range(N):
        for i in range(n):
            if theta[b, i] == -np.inf:
                out[b, i] = 0.0
            else:
                out[b, i] = 1.0 - mu[1, i, b] if in_a[b, i] else mu[0, i, b]
    return out, x, live


@nb.njit(**_JIT)
def ksubset_marginals_vjp(theta, in_a, x, live, m, g):  # pragma: no cover - compiled
    """Gradient (N, n) of ``sum(g * P(i in S))`` with respect to theta (the Hessian-vector product of log Z), given
    the forward pass's weights ``x`` and unclipped mask ``live`` (2, n, N); exactly 0 at ``-inf`` entries."""
    N, n = theta.shape
    dx = np.zeros((2, n, N), dtype=theta.dtype)
    for i in range(n):
        for b in range(N):
            if in_a[b, i]:
                if live[1, i, b]:
                    dx[1, i, b] = -x[1, i, b] * g[b, i]
            elif live[0, i, b]:
                dx[0, i, b] = x[0, i, b] * g[b, i]
    d = marginals_sets_tangent(x, dx, m)
    out = np.empty((N, n), dtype=theta.dtype)
    for b in range(N):
        for i in range(n):
            if theta[b, i] == -np.inf:
                out[b, i] = 0.0
            else:
                out[b, i] = -d[1, i, b] if in_a[b, i] else d[0, i, b]
    return out
