"""Undirected spanning trees of the complete graph: batched Prim (argmax) and matrix-tree marginals (relax)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from sst import noise
from sst.structures._backend import check_backend, kernels_for
from sst.structures._laplacian import (
    clip_theta,
    clipped_marginals,
    fast_tolerance,
    one_inverse_accurate,
    one_inverse_marginals,
)
from sst.structures.base import Structure, _widen
from sst.validation import check_floating, check_weights, checks_enabled

__all__ = ["SpanningTree"]


class SpanningTree(Structure):
    """Spanning trees of the complete graph on n nodes.

    ``w`` (..., n, n) symmetric (the diagonal is ignored); ``x`` (..., n, n) the symmetric 0/1 adjacency matrix of
    a tree (n - 1 edges). A tree's score counts each edge once: ``sum_{i<j} w_ij x_ij`` (:meth:`score`).

    - argmax: batched Prim's algorithm, n - 1 steps of (batch, n) vector work, no host sync (on CPU with numba
      installed, the same algorithm compiled, O(n^2) scalar work per graph; float16 / bfloat16 weights are read
      in float32, which holds them exactly, so both backends give the same tree);
    - ``exp_family_entropy``: edge marginals of ``p(x) ∝ exp(sum_{i<j} w_ij x_ij / tau)`` by the matrix-tree
      theorem, ``mu = d log Z / d (w / tau)``, ``mu_ij = A_ij (G_ii + G_jj - 2 G_ij)`` with G the inverse of the
      Laplacian of ``A = exp(w / tau - max)`` grounded at one node. Default (``max_range=None``), exact: per graph,
      one batched Cholesky inverse with a closed-form backward (differentiable again) where its error bound
      (``eps n (K + 1)``, K the largest entry of G) is below the result dtype's tolerance, which covers typical
      graphs; the others (large spreads, weakly connected nodes) by subtraction-free Gaussian elimination of the
      Laplacian in log space (:mod:`sst.structures._laplacian`; one host sync per call finds them). Exact to
      ~1e-13 in float64 at any spread of ``w / tau`` (see docs/library.md). With a ``max_range`` clip: one
      batched inverse with an endpoint of the heaviest edge removed (the marginals of the clipped weights, no
      sync), while ``max_range`` keeps that accurate (<= 17.6 in float64,
      :func:`sst.structures._laplacian.one_inverse_accurate`); a wider clip runs the exact path on the clipped
      weights (exact at any ``max_range``, e.g. 1e9);
    - perturb: one Gumbel per undirected edge, the same for (i, j) and (j, i).

    Args:
        max_range: None (default): no clip, exact marginals. A number: before the solve, ``w / tau`` is raised to
            at least ``max(w / tau) - max_range`` per graph, as the released code does (NRI uses 15); the result
            is then the marginals of the clipped weights, exact only when the spread of ``w / tau`` is below it.
            The gradient is the derivative of that clipped forward: the floor moves with the heaviest edge
            (as in the released code's clip; at a tie for the maximum its gradient is shared equally).
        solve_dtype: dtype of the computation (default float64); the output has the input's dtype.
        backend: argmax implementation, ``"auto"`` (numba's compiled Prim for CPU tensors when numba is
            installed, else PyTorch), ``"torch"`` or ``"numba"``; both give the same tree, ties included.

    ``-inf`` weights are accepted (an absent edge): argmax never uses one when the finite edges connect the graph,
    and relax gives it marginal 0 and gradient 0 then (the exact path treats ``w / tau`` as at least its maximum
    minus 1e6, so a graph that needs an absent edge to be connected still gets finite marginals).

    An input that is not exactly symmetric is symmetrised, ``(w + w^T) / 2`` (its gradient is split evenly between
    ``w_ij`` and ``w_ji``); with checks on (:func:`sst.checks`) a non-symmetric ``w`` raises ``ValueError``.
    """

    regularizers = ("exp_family_entropy",)
    event_ndim = 2
    kind = "SpanningTree"
    perturbed_coordinates = "symmetric"  # perturb draws one Gumbel per unordered pair
    _max_range: float | None = None
    allows_neg_inf = True  # an absent edge

    @property
    def max_range(self) -> float | None:
        """The clip of ``w / tau`` below its maximum (None or inf: no clip, the exact default)."""
        return self._max_range

    @max_range.setter
    def max_range(self, value: float | None) -> None:
        self._max_range = _check_max_range(value)

    def __init__(self, max_range: float | None = None, solve_dtype: torch.dtype = torch.float64,
                 backend: str = "auto") -> None:
        self.max_range = _check_max_range(max_range)
        self.solve_dtype = solve_dtype
        self.backend = check_backend(backend)

    # checks --------------------------------------------------------------------------------------------------
    def _check_shape(self, w: Tensor, name: str = "w") -> None:
        super()._check_shape(w, name)
        if w.shape[-1] != w.shape[-2]:
            raise ValueError(f"{name} must be square in its last two dimensions (..., n, n), got shape "
                             f"{tuple(w.shape)}")
        if w.shape[-1] < 1:
            raise ValueError(f"{name} must have n >= 1 nodes, got shape {tuple(w.shape)}")

    def _check(self, w: Tensor, name: str = "w") -> None:
        self._check_shape(w, name)
        check_floating(w, name)
        if not checks_enabled():
            return
        n = w.shape[-1]
        off = ~torch.eye(n, dtype=torch.bool, device=w.device)
        # symmetry, read in check_weights' one sync: |w - w^T| is 0 on the diagonal (NaN where w_ii is infinite,
        # and where both entries are -inf: passes); the scale is the largest finite off-diagonal |w|
        diff = (w - w.transpose(-1, -2)).abs()
        scale = w.abs().masked_fill(~off, 0).nan_to_num(posinf=0.0).amax(dim=(-2, -1), keepdim=True)
        tol = 1e-5 if w.dtype == torch.float64 else 1e-3
        asym = (diff > tol * (1 + scale), f"{name} must be symmetric (w[..., i, j] == w[..., j, i]) for SpanningTree")
        check_weights(w, name, allow_neg_inf=True, valid=off, extra=asym)  # the diagonal is ignored

    # solvers -------------------------------------------------------------------------------------------------
    def _argmax(self, w: Tensor) -> Tensor:
        n = w.shape[-1]
        if n == 1:
            return torch.zeros_like(w)
        kern = kernels_for(w, self.backend)
        sym = 0.5 * (w + w.transpose(-1, -2))
        if kern is not None:  # the kernel writes the adjacency matrix itself
            flat = sym.reshape(-1, n, n)
            if w.dtype in (torch.float16, torch.bfloat16):  # numba has neither: float32 holds them exactly
                flat = flat.to(torch.float32)
            out = torch.from_numpy(kern.prim_tree(flat.contiguous().numpy(), torch.finfo(w.dtype).min))
            return out.to(w.dtype).reshape(w.shape)
        flat = sym.reshape(-1, n, n)
        parent = self._prim_parents(flat, torch.finfo(w.dtype).min)
        # out-of-place (torch.func.vmap transforms it): the edges child -> parent of nodes 1..n-1, both directions
        up = (parent.unsqueeze(-1) == torch.arange(n, device=w.device)).to(w.dtype)
        up = up * (torch.arange(n, device=w.device) != 0).to(w.dtype).unsqueeze(-1)  # node 0 is the root
        return (up + up.mT).reshape(w.shape)

    @staticmethod
    def _prim_parents(flat: Tensor, lowest: float) -> Tensor:
        """Batched Prim from node 0 in PyTorch: n - 1 steps of (B, n) vector work; parents (B, n) (node 0's: 0).
        Out-of-place, so ``torch.func.vmap`` transforms it."""
        batch, n, _ = flat.shape
        device = flat.device
        in_tree = torch.arange(n, device=device).expand(batch, n) == 0
        best = flat[:, 0, :].clamp_min(lowest)  # best weight linking each node to the tree
        parent = torch.zeros_like(in_tree, dtype=torch.long)
        ninf = torch.tensor(float("-inf"), dtype=flat.dtype, device=device)
        for _ in range(n - 1):
            v = torch.where(in_tree, ninf, best).argmax(-1)  # (batch,)
            in_tree = in_tree | (torch.arange(n, device=device) == v.unsqueeze(-1))
            row = flat.gather(1, v[:, None, None].expand(batch, 1, n)).squeeze(1).clamp_min(lowest)
            better = (row > best) & ~in_tree
            best = torch.where(better, row, best)
            parent = torch.where(better, v.unsqueeze(-1), parent)
        return parent

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        n = w.shape[-1]
        if n == 1:
            return torch.zeros_like(w) + 0 * w
        theta = (0.5 * (w + w.transpose(-1, -2)) / tau).to(self.solve_dtype)
        valid = ~torch.eye(n, dtype=torch.bool, device=w.device)
        if _clips(self.max_range) and one_inverse_accurate(self.max_range, theta.dtype):  # no sync, as released
            mu = clipped_marginals(theta, valid, self.max_range)
        else:  # exact: one inverse where its error bound allows, the elimination for the other graphs
            if _clips(self.max_range):  # a clip too wide for one inverse everywhere: exact on the clipped weights
                theta = clip_theta(theta, valid, self.max_range)[0]
            mu = one_inverse_marginals(theta, valid, tol=fast_tolerance(w.dtype))
        return mu.to(w.dtype)

    # support -------------------------------------------------------------------------------------------------
    def perturb(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``theta + G`` with one standard Gumbel per undirected edge: ``G_ij = G_ji``, ``G_ii = 0`` (half-precision
        ``theta``: drawn and added in float32, the sum rounded to ``theta``'s dtype)."""
        self._check_shape(theta, "theta")
        check_floating(theta, "theta")
        t = _widen(theta)
        g = torch.triu(noise.gumbel_like(t, generator=generator), diagonal=1)
        return (t + g + g.transpose(-1, -2)).to(theta.dtype)

    def score(self, w: Tensor, x: Tensor) -> Tensor:
        """``sum_{i<j} w_ij x_ij`` (each undirected edge once): ``(..., n, n), (..., n, n) -> (...)``."""
        wx = torch.where(x != 0, w * x, torch.zeros((), dtype=w.dtype, device=w.device))
        return torch.triu(wx, diagonal=1).sum(dim=(-2, -1))

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """All ``n^(n-2)`` spanning trees of the complete graph (Prüfer sequences): ``(n^(n-2), n, n)``."""
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        trees = []
        if n == 1:
            trees.append([])
        elif n == 2:
            trees.append([(0, 1)])
        else:
            for seq in itertools.product(range(n), repeat=n - 2):
                trees.append(_prufer_edges(list(seq), n))
        out = torch.zeros(len(trees), n, n, dtype=dtype or torch.get_default_dtype(), device=device)
        for t, edges in enumerate(trees):
            for i, j in edges:
                out[t, i, j] = out[t, j, i] = 1.0
        return out


def _check_max_range(max_range: float | None) -> float | None:
    """None (no clip) or a number > 0 (inf: no clip either; kept as inf so that ``max_range * tau`` works)."""
    if max_range is None:
        return None
    try:
        m = float(max_range)
    except (TypeError, ValueError):
        raise ValueError(f"max_range must be None or a number > 0, got {max_range!r}") from None
    if not m > 0:
        raise ValueError(f"max_range must be None or a number > 0, got {max_range!r}")
    return m


def _clips(max_range: float | None) -> bool:
    """Whether a ``max_range`` value clips (None and inf do not)."""
    return max_range is not None and max_range != float("inf")


def _prufer_edges(seq: list[int], n: int) -> list[tuple[int, int]]:
    degree = [1] * n
    for v in seq:
        degree[v] += 1
    edges = []
    for v in seq:
        leaf = min(u for u in range(n) if degree[u] == 1)
        edges.append((leaf, v))
        degree[leaf] -= 1
        degree[v] -= 1
    u, v = (i for i in range(n) if degree[i] == 1)
    edges.append((u, v))
    return edges
