"""Shared brute-force references for the structure tests (enumerate the vertices, score, normalise)."""

from __future__ import annotations

import torch
from torch import Tensor

import sst


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


def random_weights(S: sst.Structure, batch: tuple[int, ...], n: int, dtype=torch.float64, scale: float = 1.0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Random weights with ``S``'s layout for size n (symmetric for SpanningTree)."""
    if isinstance(S, sst.CorrelatedTopK):
        shape = (*batch, 2 * n - 1)
    elif S.event_ndim == 2:
        shape = (*batch, n, n)
    else:
        shape = (*batch, n)
    w = torch.randn(shape, dtype=dtype, generator=generator) * scale
    if isinstance(S, sst.SpanningTree):
        w = torch.triu(w, 1)
        w = w + w.transpose(-1, -2)
    return w
