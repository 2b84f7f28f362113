"""The three edge distributions of the NRI table, on the ``sst`` structures, and edge metrics.

All take the ``(B, M)`` symmetrised undirected logits u (``M = n(n-1)/2``) and return ``(B, M)`` samples:

``indep``          ``sst.Binary()`` per undirected edge: Logistic perturbation and ``sigmoid(w / tau)``, which is
                   exactly a 2-way Gumbel-softmax with logits (0, u).
``ef_topk``        ``sst.TopK(k=n-1)`` over the M edges, exponential-family entropy.
``spanning_tree``  ``sst.SpanningTree()`` on the ``(B, n, n)`` symmetric logits, exponential-family entropy; the
                   perturbed weights divided by tau are clipped to within ``max_range`` (15) of their maximum
                   before the matrix-tree computation, as in the released code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from experiments.nri.model import EdgeIndex

RELAXATIONS = ("indep", "ef_topk", "spanning_tree")


def clip_range(w: Tensor, max_range: float, index: EdgeIndex | None = None) -> Tensor:
    """Raise every entry to at least ``max(w) - max_range`` (max over the event: last dim, or the
    off-diagonal of the last two dims when ``index`` is given)."""
    if max_range is None or max_range == float("inf"):
        return w
    if index is None:
        m = w.amax(dim=-1, keepdim=True)
    else:
        m = index.from_matrix(w).amax(dim=-1, keepdim=True).unsqueeze(-1)
    return torch.maximum(w, m - max_range)


def _clipped_spanning_tree(max_range: float):
    """An ``sst.SpanningTree`` whose relaxation clips its input weights to within ``max_range * tau`` of the
    maximum (i.e. ``w / tau`` to within ``max_range``), so any estimator that calls ``relax`` gets the clip."""
    import sst

    class ClippedSpanningTree(sst.SpanningTree):
        def __init__(self, max_range: float, n: int) -> None:
            super().__init__()
            self.max_range = float(max_range)
            self._index = EdgeIndex(n)

        def relax(self, w, tau=1.0, regularizer=None):
            idx = self._index
            if idx.iu.device != w.device:
                self._index = idx = idx.to(w.device)
            return super().relax(clip_range(w, self.max_range * float(tau), idx), tau, regularizer)

    return ClippedSpanningTree


class EdgeDistribution:
    """One of the three edge distributions over the undirected edges of an n-vertex graph.

    Args:
        relaxation: ``indep``, ``ef_topk`` or ``spanning_tree``.
        index: the :class:`EdgeIndex` of the model (on the training device).
        tau: relaxation temperature. regularizer: the structure's regularizer name (None: its default).
        max_range: spanning-tree clip (None or inf: no clip).
    """

    def __init__(self, relaxation: str, index: EdgeIndex, tau: float, regularizer: str | None = None,
                 max_range: float | None = 15.0) -> None:
        import sst

        if relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {', '.join(RELAXATIONS)} for NRI, got {relaxation!r}")
        self.name = relaxation
        self.index = index
        self.tau = float(tau)
        self.regularizer = regularizer
        n = index.n
        if relaxation == "indep":
            self.structure = sst.Binary()
        elif relaxation == "ef_topk":
            self.structure = sst.TopK(k=n - 1)
        else:
            clip = max_range if max_range is not None else float("inf")
            self.structure = _clipped_spanning_tree(clip)(clip, n)
        self.matrix = relaxation == "spanning_tree"

    # layouts ------------------------------------------------------------------------------------------------
    def theta(self, u: Tensor) -> Tensor:
        """``(B, M)`` logits -> the structure's parameter layout."""
        return self.index.to_matrix(u) if self.matrix else u

    def to_edges(self, x: Tensor) -> Tensor:
        """The structure's sample layout -> ``(B, M)``."""
        return self.index.from_matrix(x) if self.matrix else x

    # samples ------------------------------------------------------------------------------------------------
    def relaxed(self, u: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Relaxed sample (SST), differentiable in u. ``(B, M)`` -> ``(B, M)`` in [0, 1]."""
        s = self.structure
        w = s.perturb(self.theta(u), generator=generator)
        return self.to_edges(s.relax(w, self.tau, self.regularizer))

    def hard(self, u: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Exact sample (perturb, then argmax): ``(B, M)`` 0/1."""
        s = self.structure
        with torch.no_grad():
            w = s.perturb(self.theta(u), generator=generator)
            return self.to_edges(s.argmax(w)).to(u.dtype)

    def mode(self, u: Tensor) -> Tensor:
        """Argmax of the unperturbed logits: ``(B, M)`` 0/1 (the most likely tree / top-k / sign pattern)."""
        with torch.no_grad():
            return self.to_edges(self.structure.argmax(self.theta(u))).to(u.dtype)


def edge_counts(pred: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    """Per-graph precision and recall of 0/1 undirected edge sets ``(B, M)``: ``(B,)`` each (0 when undefined)."""
    tp = (pred * true).sum(-1)
    precision = tp / pred.sum(-1).clamp_min(1.0)
    recall = tp / true.sum(-1).clamp_min(1.0)
    return precision, recall
