"""One registry of per-structure test companions (as harvardnlp/pytorch-struct's tests/extensions.py does).

For every structure: its constructors, the sizes small enough to enumerate, a weight generator with the
structure's layout (random, or with a prescribed spread of ``w / tau``), the brute-force references (vertices by
``S.enumerate``, scores by ``S.score``: argmax, Gibbs marginals, and the covariance of the vertex indicators,
which is the Jacobian of the marginals), and a Hypothesis strategy for (structure, n, batch shape). Tests iterate
over :data:`COMPANIONS` instead of keeping their own lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st
from torch import Tensor

import sst

# ----------------------------------------------------------------------------------------------- brute force


def vertex_scores(S: sst.Structure, w: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``(scores (..., M), vertices (M, *event))`` for weights ``w`` (..., *event)."""
    V = S.enumerate(n, dtype=w.dtype)
    ev = S.event_ndim
    wv = w.reshape(*w.shape[: w.dim() - ev], 1, *w.shape[w.dim() - ev:])
    return S.score(wv, V), V


def brute_argmax(S: sst.Structure, w: Tensor, n: int) -> Tensor:
    scores, V = vertex_scores(S, w, n)
    return V[scores.argmax(-1)]


def brute_marginals(S: sst.Structure, w: Tensor, tau: float, n: int) -> Tensor:
    """Marginals of ``p(x) ∝ exp(score(x) / tau)`` over the enumerated vertices."""
    scores, V = vertex_scores(S, w, n)
    p = torch.softmax(scores / tau, dim=-1)
    return torch.tensordot(p, V, dims=([-1], [0]))


def brute_covariance(S: sst.Structure, w: Tensor, tau: float, n: int) -> Tensor:
    """``Cov(x_e, x_f)`` under ``p(x) ∝ exp(score(x) / tau)``: ``(..., *event, *event)``, summed without
    cancellation (``x_e - mu_e`` is ``P(x_e = 0)``, summed directly, when ``x_e = 1``), so it keeps its relative
    accuracy when the law is nearly deterministic (a plain double autograd of logsumexp does not)."""
    scores, V = vertex_scores(S, w, n)
    p = torch.softmax(scores / tau, dim=-1)  # (..., M)
    Vf = V.flatten(1)  # (M, E)
    mu = p @ Vf
    nu = p @ (1 - Vf)
    d = torch.where(Vf.bool(), nu.unsqueeze(-2), -mu.unsqueeze(-2))  # (..., M, E)
    cov = torch.einsum("...m,...me,...mf->...ef", p, d, d)
    ev = tuple(V.shape[1:])
    return cov.reshape(*cov.shape[:-2], *ev, *ev)


def brute_marginal_grad(S: sst.Structure, w: Tensor, c: Tensor, tau: float, n: int) -> Tensor:
    """``d <c, relax(w, tau)> / d w`` from the brute-force covariance: ``(..., *event)``.

    SpanningTree symmetrises ``w`` (each edge's gradient split evenly between (i, j) and (j, i)) and reports each
    edge at both (i, j) and (j, i)."""
    ev = S.event_ndim
    cov = brute_covariance(S, w, tau, n)
    cf = c.flatten(-ev) if ev > 1 else c  # (..., E)
    covf = cov.reshape(*cov.shape[:-2 * ev], cf.shape[-1], cf.shape[-1])
    g = (cf.unsqueeze(-1) * covf).sum(-2).reshape(c.shape)
    g = g / tau
    if isinstance(S, sst.SpanningTree):
        g = 0.5 * g
    return g


# ----------------------------------------------------------------------------------------------- weights


def event_shape(S: sst.Structure, n: int) -> tuple[int, ...]:
    if isinstance(S, sst.CorrelatedTopK):
        return (2 * n - 1,)
    return (n, n) if S.event_ndim == 2 else (n,)


def random_weights(S: sst.Structure, batch: tuple[int, ...], n: int, dtype=torch.float64, scale: float = 1.0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Random N(0, scale^2) weights with ``S``'s layout for size n (symmetric for SpanningTree)."""
    w = torch.randn((*batch, *event_shape(S, n)), dtype=dtype, generator=generator) * scale
    if isinstance(S, sst.SpanningTree):
        w = torch.triu(w, 1)
        w = w + w.transpose(-1, -2)
    return w


def valid_entries(S: sst.Structure, n: int) -> Tensor:
    """Bool mask of the entries the structure reads (off-diagonal; Arborescence: and off the root column)."""
    if S.event_ndim == 1:
        return torch.ones(event_shape(S, n), dtype=torch.bool)
    v = ~torch.eye(n, dtype=torch.bool)
    if isinstance(S, sst.Arborescence):
        v[:, S.root % n] = False
    return v


def spread_weights(S: sst.Structure, batch: tuple[int, ...], n: int, spread: float, tau: float,
                   generator: torch.Generator | None = None) -> Tensor:
    """float64 weights whose ``w / tau`` spans exactly ``spread`` (max - min over the valid entries) per instance,
    the rest 0: the regime where an unclipped matrix-tree solve is badly conditioned."""
    z = random_weights(S, batch, n, generator=generator)
    v = valid_entries(S, n)
    dims = tuple(range(-S.event_ndim, 0))
    zmax = z.masked_fill(~v, float("-inf")).amax(dim=dims, keepdim=True)
    zmin = z.masked_fill(~v, float("inf")).amin(dim=dims, keepdim=True)
    return ((z - zmin) / (zmax - zmin).clamp_min(1e-12) * spread * tau).masked_fill(~v, 0.0)


# ----------------------------------------------------------------------------------------------- registry


def min_size(S: sst.Structure) -> int:
    """Smallest n the structure accepts."""
    root = S.root if isinstance(S, sst.Arborescence) else 0
    return max(1, getattr(S, "k", 1), root + 1 if root >= 0 else -root)


@dataclass(frozen=True)
class Companion:
    """What the tests need to know about one structure.

    Attributes:
        name: registry key. make: constructors (one structure instance per call, each a variant to test).
        sizes: n small enough to enumerate (brute force); the last is the largest.
        gibbs: the default relaxation is the Gibbs marginal computation (compared with :func:`brute_marginals`).
        neg_inf: -inf weights are accepted and mean "never selected".
        max_n: largest n for Hypothesis draws (enumeration cost).
    """

    name: str
    make: tuple[Callable[[], sst.Structure], ...]
    sizes: tuple[int, ...]
    gibbs: bool = True
    neg_inf: bool = False
    max_n: int = 5
    extra: dict = field(default_factory=dict)

    def structures(self) -> list[sst.Structure]:
        return [m() for m in self.make]

    def sizes_for(self, S: sst.Structure) -> list[int]:
        """The enumerable sizes that fit ``S`` (n >= k, n > root)."""
        return [n for n in self.sizes if n >= min_size(S)]

    def strategy(self, min_n: int = 1) -> st.SearchStrategy:
        """Hypothesis strategy for ``(S, n, batch)``: a constructor, a size that fits it, a batch shape."""
        @st.composite
        def draw(data):
            S = data(st.sampled_from(self.make))()
            lo = max(min_n, min_size(S))
            n = data(st.integers(lo, self.max_n))
            batch = tuple(data(st.lists(st.integers(1, 3), max_size=2)))
            return S, n, batch

        return draw()


COMPANIONS: dict[str, Companion] = {c.name: c for c in [
    Companion("categorical", (sst.Categorical,), (1, 2, 5), neg_inf=True, max_n=6),
    Companion("binary", (sst.Binary,), (1, 3, 5), neg_inf=True, max_n=6),
    Companion("topk", (lambda: sst.TopK(1), lambda: sst.TopK(2), lambda: sst.TopK(4)), (1, 2, 3, 4, 6, 7),
              neg_inf=True, max_n=7),
    Companion("correlated_topk", (lambda: sst.CorrelatedTopK(1), lambda: sst.CorrelatedTopK(2),
                                  lambda: sst.CorrelatedTopK(3)), (1, 2, 4, 5, 7), max_n=7),
    Companion("spanning_tree", (sst.SpanningTree, lambda: sst.SpanningTree(max_range=15.0)), (1, 2, 3, 5)),
    Companion("arborescence", (sst.Arborescence, lambda: sst.Arborescence(root=2), lambda: sst.Arborescence(-1)),
              (1, 2, 3, 5)),
    Companion("permutation", (sst.Permutation,), (1, 2, 4), gibbs=False, max_n=4),
]}


def all_structures() -> list[tuple[str, sst.Structure]]:
    """``(id, structure)`` for every constructor of every companion."""
    return [(f"{c.name}-{i}", S) for c in COMPANIONS.values() for i, S in enumerate(c.structures())]
