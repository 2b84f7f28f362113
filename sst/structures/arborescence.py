"""Spanning arborescences (directed spanning trees) with a fixed root: Chu-Liu/Edmonds and the directed
matrix-tree theorem."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from sst.structures import _opaque
from sst.structures._edmonds import max_arborescence, max_arborescence_batched
from sst.structures._laplacian import (
    clip_theta,
    clipped_marginals,
    fast_tolerance,
    one_inverse_accurate,
    one_inverse_marginals,
)
from sst.structures.base import Structure
from sst.structures.spanning_tree import _check_max_range, _clips
from sst.validation import check_weights, static_int, traced

__all__ = ["Arborescence"]


class Arborescence(Structure):
    """Arborescences of the complete digraph on n nodes rooted at ``root``.

    ``w`` (..., n, n) with ``w[i, j]`` the weight of edge i -> j; ``x`` (..., n, n) 0/1 with ``x[i, j] = 1`` when i
    is the parent of j: one parent per non-root node, none for the root, no cycles. The diagonal and the column of
    the root are ignored (and are 0 in every output).

    - argmax: Chu-Liu/Edmonds, O(n^3) per graph. CPU tensors: NumPy, one graph at a time (a Python loop over the
      flattened batch). Other devices: batched in PyTorch on ``w``'s device
      (:func:`sst.structures._edmonds.max_arborescence_batched`: at most ``n - 2`` vectorised contraction
      rounds, no host round trip or sync);
    - ``exp_family_entropy``: marginals of ``p(x) ∝ exp(<w, x> / tau)`` by the directed matrix-tree theorem
      (Koo et al. 2007), ``mu = d log Z / d (w / tau)`` with ``Z = det L_r``, L the in-degree Laplacian of
      ``A = exp(w / tau)`` (off the diagonal and the root column) without the root's row and column; ``A``
      shifted by its column maxima (a node's incoming weights can be shifted together without changing the law),
      G the inverse of ``L_r``, ``mu_ij = A_ij (G_jj - G_ji)``. Default (``max_range=None``), exact: one batched
      inverse with a closed-form backward (differentiable again) for the graphs whose error bound allows it
      (as for :class:`sst.SpanningTree`), the subtraction-free log-space
      elimination (:mod:`sst.structures._laplacian`) for the others (one host sync per call); exact to ~1e-13
      in float64 at any spread of ``w / tau`` (see docs/library.md). With a ``max_range`` clip: ``A`` raised to
      ``exp(-max_range)``, one batched inverse (no sync), while ``max_range`` keeps that accurate (<= 17.6 in
      float64); a wider clip runs the exact path on the clipped weights.

    ``-inf`` weights are accepted (an absent edge), as for :class:`sst.SpanningTree`.

    Args:
        root: the root node (negative values count from the end, as in Python).
        max_range: None (default): no clip, exact marginals. A number: ``w / tau`` is raised to at least its
            column maximum minus ``max_range`` before the solve (the marginals of the clipped weights; the
            gradient is the derivative of that clipped forward, the column maxima included).
        solve_dtype: dtype of the computation (default float64); the output has the input's dtype.
    """

    regularizers = ("exp_family_entropy",)
    event_ndim = 2
    kind = "Arborescence"
    perturbed_coordinates = "arborescence"  # the edges i -> j, i != j, j != root decide the argmax
    allows_neg_inf = True  # an absent edge

    def __init__(self, root: int = 0, max_range: float | None = None,
                 solve_dtype: torch.dtype = torch.float64) -> None:
        if isinstance(root, bool) or int(root) != root:
            raise ValueError(f"root must be an integer node index, got {root!r}")
        self.root = int(root)
        self.max_range = _check_max_range(max_range)
        self.solve_dtype = solve_dtype

    def __repr__(self) -> str:
        return f"Arborescence(root={self.root})"

    def _root(self, n: int) -> int:
        return self.root % n

    def _check_shape(self, w: Tensor, name: str = "w") -> None:
        super()._check_shape(w, name)
        n = w.shape[-1]
        if w.shape[-2] != n:
            raise ValueError(f"{name} must be square in its last two dimensions (..., n, n), got shape "
                             f"{tuple(w.shape)}")
        if not -n <= static_int(self.root) < n:  # static_int: root a constant of a traced graph
            raise ValueError(f"root={self.root} is not a node of a graph with n={n} nodes (shape of {name}: "
                             f"{tuple(w.shape)})")

    def _check(self, w: Tensor, name: str = "w") -> None:
        self._check_shape(w, name)
        # -inf: an absent edge; the diagonal and the root column are ignored
        check_weights(w, name, allow_neg_inf=True, valid=self._valid(w.shape[-1], w.device))

    def _valid(self, n: int, device: torch.device) -> Tensor:
        valid = ~torch.eye(n, dtype=torch.bool, device=device)
        valid[:, self._root(n)] = False
        return valid

    def _argmax(self, w: Tensor) -> Tensor:
        n = w.shape[-1]
        r = self._root(n)
        if traced():  # torch.compile / torch.func: the same solver as an opaque operator
            return _opaque.max_arborescence(w, r)
        if w.device.type != "cpu":
            return self._argmax_batched(w)
        flat = np.nan_to_num(w.reshape(-1, n, n).to("cpu", torch.float64).numpy(), nan=-1e300, posinf=1e300,
                             neginf=-1e300)
        parents = np.stack([max_arborescence(g, r) for g in flat]) if len(flat) else np.zeros((0, n), np.int64)
        x = np.zeros(flat.shape, dtype=np.float64)
        b, child = np.nonzero(parents >= 0)
        x[b, parents[b, child], child] = 1.0
        return torch.from_numpy(x).to(dtype=w.dtype).reshape(w.shape)

    def _argmax_batched(self, w: Tensor) -> Tensor:
        """The argmax by batched Chu-Liu/Edmonds in PyTorch on ``w``'s device (no host round trip):
        ``(..., n, n) -> (..., n, n)``; the path of non-CPU tensors."""
        n = w.shape[-1]
        r = self._root(n)
        parent = max_arborescence_batched(w, r)
        x = torch.nn.functional.one_hot(parent.clamp(min=0), n).transpose(-1, -2)  # x[..., parent[v], v] = 1
        return (x * (torch.arange(n, device=w.device) != r)).to(w.dtype)

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        n = w.shape[-1]
        if n == 1:
            return torch.zeros_like(w) + 0 * w
        theta = (w / tau).to(self.solve_dtype)
        valid = self._valid(n, w.device)
        root = self._root(n)
        if _clips(self.max_range) and one_inverse_accurate(self.max_range, theta.dtype):  # no sync, as released
            return clipped_marginals(theta, valid, self.max_range, root).to(w.dtype)
        if _clips(self.max_range):  # a clip too wide for one inverse everywhere: exact on the clipped weights
            theta = clip_theta(theta, valid, self.max_range, per_column=True)[0]
        return one_inverse_marginals(theta, valid, root, tol=fast_tolerance(w.dtype)).to(w.dtype)

    def score(self, w: Tensor, x: Tensor) -> Tensor:
        """``sum_ij w_ij x_ij`` over the edges of x: ``(..., n, n), (..., n, n) -> (...)``."""
        wx = torch.where(x != 0, w * x, torch.zeros((), dtype=w.dtype, device=w.device))
        return wx.sum(dim=(-2, -1))

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """All ``n^(n-2)`` arborescences rooted at ``root``: ``(n^(n-2), n, n)`` (parent choices without cycles)."""
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        r = self.root % n
        nodes = [v for v in range(n) if v != r]
        choices = [[u for u in range(n) if u != v] for v in nodes]
        out = []
        for parents in itertools.product(*choices):
            par = dict(zip(nodes, parents))
            if all(_reaches_root(v, par, r, n) for v in nodes):
                x = [[0.0] * n for _ in range(n)]
                for v, p in par.items():
                    x[p][v] = 1.0
                out.append(x)
        return torch.tensor(out, dtype=dtype or torch.get_default_dtype(), device=device).reshape(len(out), n, n)


def _reaches_root(v: int, par: dict[int, int], root: int, n: int) -> bool:
    for _ in range(n):
        if v == root:
            return True
        v = par[v]
    return v == root
