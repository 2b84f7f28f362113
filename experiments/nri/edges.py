"""The edge distributions of the NRI table, on the ``sst`` structures, and edge metrics.

The encoder gives one logit per directed edge (two for ``indep``); :meth:`EdgeDistribution.logits` turns them
into the distribution's parameter u, and every sample comes back in the distribution's edge layout
(:attr:`EdgeDistribution.directed`: ``(B, E)`` directed, ``E = n(n-1)``, else ``(B, M)`` undirected,
``M = n(n-1)/2``); :meth:`EdgeDistribution.to_directed` gives the decoder's ``(B, E)`` weights.

The structure comes from :func:`experiments.common.relaxations.build_relaxation`; the distribution adds the layouts.

``indep``          As released (``--sst indep --symmeterize_logits False``): two logits (u0 "no edge", u1 "edge")
                   per DIRECTED edge, no symmetrisation, 90 independent 2-way Gumbel-softmax edges. The sample
                   softmax((u + G) / tau)[1] equals ``sigmoid((u1 - u0 + L) / tau)`` with L = G1 - G0 Logistic, so
                   it is ``sst.Binary()`` on ``u1 - u0``; the KL sums u + exp(-u) - 1 over all 2E logits.
``indep_sym``      Ours before issue 38, NOT the released row: ``sst.Binary()`` per undirected edge on the
                   symmetrised logit (one Logistic perturbation per pair), KL over the symmetrised logits.
``ef_topk``        ``sst.TopK(k=n-1)`` over the M edges, exponential-family entropy, exact gradients.
``ef_topk_fd``     The same marginals with the released layer's backward: a central finite difference along
                   the upstream gradient with step ``eps`` (``sst.subset_baselines.FiniteDifferenceTopK``).
``spanning_tree``  ``sst.SpanningTree()`` on the ``(B, n, n)`` symmetric logits, exponential-family entropy; the
                   perturbed weights divided by tau are clipped to within ``max_range`` (15) of their maximum
                   before the matrix-tree computation, as in the released code (``ClippedSpanningTree``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from experiments.common.relaxations import Relaxation
from experiments.nri.checks import KL_EDGES
from experiments.nri.model import EdgeIndex, gumbel_kl

LAYOUTS = ("binary", "topk", "spanning_tree")  # relaxation.structure kinds an edge distribution can lay out


class EdgeDistribution:
    """One of the NRI table's edge distributions over the edges of an n-vertex graph.

    Args:
        relaxation: the :class:`~experiments.common.relaxations.Relaxation` (``build_relaxation(cfg.relaxation,
            k=n - 1, max_range=model.max_range)``): its structure, regularizer and tau; ``options["directed"]``
            (``indep`` as released) gives two logits per directed edge.
        index: the :class:`EdgeIndex` of the model (on the training device).

    Layouts: u is ``(B, E, 2)`` for a directed relaxation and ``(B, M)`` (symmetrised) otherwise; samples are
    ``(B, E)`` for a directed one and ``(B, M)`` otherwise (:attr:`directed`).
    """

    def __init__(self, relaxation: Relaxation, index: EdgeIndex) -> None:
        if relaxation.kind not in LAYOUTS:
            raise ValueError(f"relaxation.structure must be one of {', '.join(LAYOUTS)} for NRI, got "
                             f"{relaxation.kind!r}")
        self.relaxation = relaxation
        self.name = relaxation.name
        self.index = index
        self.tau = relaxation.tau
        self.regularizer = relaxation.regularizer
        self.structure = relaxation.structure
        self.matrix = relaxation.kind == "spanning_tree"
        self.directed = bool(relaxation.options.get("directed", False))
        if self.directed and relaxation.kind != "binary":
            raise ValueError(f"relaxation.directed needs relaxation.structure=binary, got {relaxation.kind}")

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


def edge_distribution(name: str, index: EdgeIndex, tau: float, max_range: float | None = 15.0,
                      **options: object) -> EdgeDistribution:
    """The edge distribution of ``configs/relaxation/<name>.yaml`` at temperature ``tau`` (``options`` override its
    other keys, e.g. ``eps``), as :class:`~experiments.nri.task.NRITask` builds it: for scripts and tests."""
    from experiments.common.relaxations import build_relaxation, relaxation_config

    cfg = relaxation_config(name, tau=tau, **options)
    return EdgeDistribution(build_relaxation(cfg, k=index.n - 1, max_range=max_range), index)


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
    prec, rec, acc = means.tolist()
    i = 0 if prec[0] >= prec[1] else 1
    return {"edge_precision_released": prec[i], "edge_recall_released": rec[i], "edge_accuracy_released": acc[i],
            "edge_released_complement": float(i == 0)}
