"""The edge distributions of the NRI table, on the ``sst`` structures, and edge metrics.

The encoder gives one logit per directed edge (two for ``indep``); :meth:`EdgeDistribution.logits` turns them
into the distribution's parameter u, and every sample comes back in the distribution's edge layout
(:attr:`EdgeDistribution.directed`: ``(B, E)`` directed, ``E = n(n-1)``, else ``(B, M)`` undirected,
``M = n(n-1)/2``); :meth:`EdgeDistribution.to_directed` gives the decoder's ``(B, E)`` weights.

``indep``          As released (``--sst indep --symmeterize_logits False``): two logits (u0 "no edge", u1 "edge")
                   per DIRECTED edge, no symmetrisation, 90 independent 2-way Gumbel-softmax edges. The sample
                   softmax((u + G) / tau)[1] equals ``sigmoid((u1 - u0 + L) / tau)`` with L = G1 - G0 Logistic, so
                   it is ``sst.Binary()`` on ``u1 - u0``; the KL sums u + exp(-u) - 1 over all 2E logits.
``indep_sym``      Ours before issue 38, NOT the released row: ``sst.Binary()`` per undirected edge on the
                   symmetrised logit (one Logistic perturbation per pair), KL over the symmetrised logits.
``ef_topk``        ``sst.TopK(k=n-1)`` over the M edges, exponential-family entropy, exact gradients.
``ef_topk_fd``     The same marginals with the released layer's backward: a central finite difference along
                   the upstream gradient with step ``eps`` (``sst.subset_baselines``' mechanism, shared with L2X).
``spanning_tree``  ``sst.SpanningTree()`` on the ``(B, n, n)`` symmetric logits, exponential-family entropy; the
                   perturbed weights divided by tau are clipped to within ``max_range`` (15) of their maximum
                   before the matrix-tree computation, as in the released code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from experiments.nri.checks import KL_EDGES
from experiments.nri.model import EdgeIndex, gumbel_kl

RELAXATIONS = ("indep", "indep_sym", "ef_topk", "ef_topk_fd", "spanning_tree")


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


def _finite_difference_topk(k: int, eps: float):
    """An ``sst.TopK(k)`` whose exp-family relaxation is differentiated as the released ``SoftTopK`` layer is:
    forward the exact marginals of ``w / tau``, backward ``(mu(w/tau + eps g) - mu(w/tau - eps g)) / (2 eps)``
    (the mechanism of ``sst.subset_baselines.ef_topk_fd_subset``, used by L2X's ``ef_topk_fd`` row)."""
    import sst
    from sst.subset_baselines import _FiniteDifferenceMarginals

    class FiniteDifferenceTopK(sst.TopK):
        def __init__(self, k: int, eps: float) -> None:
            super().__init__(k)
            self.eps = float(eps)

        def __repr__(self) -> str:
            return f"FiniteDifferenceTopK(k={self.k}, eps={self.eps})"

        def _relax(self, w: Tensor, tau, regularizer: str) -> Tensor:
            return _FiniteDifferenceMarginals.apply(w / tau, self.k, self.eps)

    return FiniteDifferenceTopK(k, eps)


class EdgeDistribution:
    """One of the NRI table's edge distributions over the edges of an n-vertex graph.

    Args:
        relaxation: one of :data:`RELAXATIONS`.
        index: the :class:`EdgeIndex` of the model (on the training device).
        tau: relaxation temperature. regularizer: the structure's regularizer name (None: its default;
            ``ef_topk_fd``, the L2X config's name for the finite-difference row, means the exp-family one).
        max_range: spanning-tree clip (None or inf: no clip).
        eps: finite-difference step of ``ef_topk_fd`` (the released ``--eps_for_finitediff``, default 1e-2).

    Layouts: u is ``(B, E, 2)`` for ``indep`` and ``(B, M)`` (symmetrised) otherwise; samples are ``(B, E)``
    for ``indep`` and ``(B, M)`` otherwise (:attr:`directed`).
    """

    def __init__(self, relaxation: str, index: EdgeIndex, tau: float, regularizer: str | None = None,
                 max_range: float | None = 15.0, eps: float = 1e-2) -> None:
        import sst

        if relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {', '.join(RELAXATIONS)} for NRI, got {relaxation!r}")
        if not float(tau) > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.name = relaxation
        self.index = index
        self.tau = float(tau)
        self.regularizer = "exp_family_entropy" if regularizer == "ef_topk_fd" else regularizer
        self.eps = float(eps)
        n = index.n
        if relaxation in ("indep", "indep_sym"):
            self.structure = sst.Binary()
        elif relaxation == "ef_topk":
            self.structure = sst.TopK(k=n - 1)
        elif relaxation == "ef_topk_fd":
            if not self.eps > 0:
                raise ValueError(f"relaxation.eps (finite-difference step) must be > 0, got {eps}")
            self.structure = _finite_difference_topk(n - 1, self.eps)
        else:
            clip = max_range if max_range is not None else float("inf")
            self.structure = _clipped_spanning_tree(clip)(clip, n)
        self.matrix = relaxation == "spanning_tree"
        self.directed = relaxation == "indep"

    @property
    def logits_per_edge(self) -> int:
        """Encoder outputs per directed edge: 2 for the released ``indep`` (u0 "no edge", u1 "edge"), else 1."""
        return 2 if self.directed else 1

    # layouts ------------------------------------------------------------------------------------------------
    def logits(self, raw: Tensor) -> Tensor:
        """Encoder output -> u: ``(B, E, 2)`` kept as it is (``indep``) or ``(B, E)`` symmetrised to ``(B, M)``."""
        return raw if self.directed else self.index.symmetrise(raw)

    def theta(self, u: Tensor) -> Tensor:
        """u -> the structure's parameter layout (``indep``: ``u1 - u0``, ``(B, E)``)."""
        if self.directed:
            return u[..., 1] - u[..., 0]
        return self.index.to_matrix(u) if self.matrix else u

    def to_edges(self, x: Tensor) -> Tensor:
        """The structure's sample layout -> ``(B, E)`` (``indep``) or ``(B, M)``."""
        return self.index.from_matrix(x) if self.matrix else x

    def to_directed(self, x: Tensor) -> Tensor:
        """Samples in this distribution's layout -> the decoder's ``(B, E)`` directed weights."""
        return x if self.directed else self.index.to_directed(x)

    # KL -----------------------------------------------------------------------------------------------------
    def kl(self, u: Tensor, edges: str = "directed") -> Tensor:
        """Gumbel KL ``sum (u + exp(-u) - 1) / n``: ``(B,)``.

        ``edges="directed"`` (the released ELBO): over every logit of every directed edge: 2E terms for
        ``indep``, and for the symmetrised rows the E directed entries, i.e. twice the sum over the M pairs.
        ``edges="undirected"``: over the M symmetrised logits (half the directed value; the symmetrised rows only).
        """
        n = self.index.n
        if edges not in KL_EDGES:
            raise ValueError(f"kl edges must be one of {', '.join(KL_EDGES)}, got {edges!r}")
        if self.directed:
            if edges != "directed":
                raise ValueError("relaxation=indep has directed logits: only the directed KL (model.kl_edges="
                                 "directed) is defined for it")
            return gumbel_kl(u.flatten(-2), n)
        kl = gumbel_kl(u, n)
        return 2.0 * kl if edges == "directed" else kl

    # samples ------------------------------------------------------------------------------------------------
    def relaxed(self, u: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Relaxed sample (SST), differentiable in u; in [0, 1], this distribution's edge layout."""
        s = self.structure
        w = s.perturb(self.theta(u), generator=generator)
        return self.to_edges(s.relax(w, self.tau, self.regularizer))

    def hard(self, u: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Exact sample (perturb, then argmax): 0/1 in this distribution's edge layout."""
        s = self.structure
        with torch.no_grad():
            w = s.perturb(self.theta(u), generator=generator)
            return self.to_edges(s.argmax(w)).to(w.dtype)

    def mode(self, u: Tensor) -> Tensor:
        """Argmax of the unperturbed logits: 0/1 (the most likely tree / top-k / sign pattern)."""
        with torch.no_grad():
            th = self.theta(u)
            return self.to_edges(self.structure.argmax(th)).to(th.dtype)


def edge_counts(pred: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    """Per-graph precision and recall of 0/1 edge sets ``(B, K)`` (any layout, same for both): ``(B,)`` each
    (0 when undefined). Ours: the sample itself is scored."""
    tp = (pred * true).sum(-1)
    precision = tp / pred.sum(-1).clamp_min(1.0)
    recall = tp / true.sum(-1).clamp_min(1.0)
    return precision, recall


def released_edge_sums(pred: Tensor, true: Tensor) -> Tensor:
    """Sums over the batch of the per-graph metrics that the released ``utils.sampling_edge_metrics`` averages.

    ``pred``, ``true``: ``(B, E)`` 0/1 DIRECTED edges (for a symmetric sample the same numbers as undirected).
    The released metric scores two "types": column 0 the complement ``1 - pred`` ("no edge"), column 1 the sample
    ("edge"), each against the true edges. Returns ``(3, 2)``: rows precision ``tp / (tp + fp)``, recall
    ``tp / (tp + fn)``, accuracy; summed over graphs (divide by the count, then :func:`released_choice`). A type
    with no predicted edge scores precision 0 here (the released code gives NaN).
    """
    types = torch.stack([1.0 - pred, pred], dim=-1)  # (B, E, 2)
    t = true.unsqueeze(-1)
    tp = (types * t).sum(-2)
    fp = (types * (1.0 - t)).sum(-2)
    fn = ((1.0 - types) * t).sum(-2)
    tn = ((1.0 - types) * (1.0 - t)).sum(-2)
    precision = tp / (tp + fp).clamp_min(1.0)
    recall = tp / (tp + fn).clamp_min(1.0)
    accuracy = (tp + tn) / (tp + tn + fp + fn)
    return torch.stack([precision, recall, accuracy]).sum(1)


def released_choice(means: Tensor) -> dict[str, float]:
    """The released choice from :func:`released_edge_sums` ``/ count`` ``(3, 2)``: the type with the larger mean
    precision over the evaluation set (``np.argmax``: the complement wins ties), its precision, recall and
    accuracy, and ``complement`` = 1.0 when the complement was chosen."""
    prec, rec, acc = (float(v) for v in means[0]), (float(v) for v in means[1]), (float(v) for v in means[2])
    prec, rec, acc = list(prec), list(rec), list(acc)
    i = 0 if prec[0] >= prec[1] else 1
    return {"edge_precision_released": prec[i], "edge_recall_released": rec[i], "edge_accuracy_released": acc[i],
            "edge_released_complement": float(i == 0)}
