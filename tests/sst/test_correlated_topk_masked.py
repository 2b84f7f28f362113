"""CorrelatedTopK.masked: variable-length chains (padding out of every subset), against brute force."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import sst
from tests.sst.companions import random_weights, vertex_scores


def _allowed_set(mask: Tensor, k: int) -> Tensor:
    """(..., n) bool: the positions a subset may use, the allowed ones plus the first fillers of a short row."""
    rank = torch.cumsum(~mask, -1)
    return mask | (~mask & (rank <= k - mask.sum(-1, keepdim=True)))


def _restricted(S: sst.CorrelatedTopK, w: Tensor, mask: Tensor, tau: float, n: int) -> tuple[Tensor, Tensor]:
    """Brute-force (argmax, marginals) over the subsets inside the allowed positions only."""
    scores, V = vertex_scores(S, w, n)
    inside = (V[:, :n] <= _allowed_set(mask, S.k)[..., None, :].to(V.dtype)).all(-1)  # (..., M)
    scores = scores.masked_fill(~inside, float("-inf"))
    p = torch.softmax(scores / tau, dim=-1)
    return V[scores.argmax(-1)], torch.tensordot(p, V, dims=([-1], [0]))


@pytest.mark.parametrize("n,k", [(6, 2), (7, 3), (5, 5)])
def test_masked_matches_brute_force_on_the_allowed_positions(n, k):
    S = sst.CorrelatedTopK(k)
    gen = torch.Generator().manual_seed(n * 10 + k)
    w = random_weights(S, (64,), n, scale=2.0, generator=gen)
    mask = torch.rand(64, n, generator=gen) < 0.6
    mask[0] = True
    mask[1] = False  # no allowed position: the first k positions, as fillers
    wm = S.masked(w, mask)
    mode, marg = _restricted(S, w, mask, 0.7, n)
    assert torch.equal(S.argmax(wm), mode)
    torch.testing.assert_close(S.relax(wm, 0.7), marg, rtol=0, atol=1e-9)
    short = mask.sum(-1) < k
    assert short.any() and (~short).any()
    assert torch.all(S.argmax(wm)[~short][:, :n][~mask[~short]] == 0)


def test_masked_is_exact_at_any_scale_in_float32():
    """Very negative pairwise weights make two padding positions pay for a real adjacent pair under any fixed
    large negative padding weight; ``masked`` keeps padding out (marginal 0, gradient 0) at every scale."""
    k, n = 4, 12
    S = sst.CorrelatedTopK(k)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([12, 8, 5, 2])
    mask = torch.arange(n) < lengths[:, None]
    unary = torch.randn(4, n, generator=gen) * 50 - 5e3
    w = torch.cat([unary, torch.full((4, n - 1), -1e5)], -1).requires_grad_()
    wm = S.masked(w, mask)
    x = S.argmax(wm)[:, :n]
    assert torch.all(x.sum(-1) == k) and torch.all(x[:3][~mask[:3]] == 0)
    assert torch.equal(x[3], (torch.arange(n) < k).float()), "a short row: its positions, then the first fillers"
    z = S.relax(wm, 1.0)[:, :n]
    assert float(z.detach()[:3][~mask[:3]].abs().max()) < 1e-30
    torch.testing.assert_close(z.detach()[3], (torch.arange(n) < k).float(), rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad((z * torch.randn(z.shape, generator=gen)).sum(), w)
    assert torch.isfinite(grad).all() and float(grad[3].abs().max()) < 1e-6
    assert torch.all(grad[:, :n][~mask] == 0)


def test_masked_gradcheck():
    S = sst.CorrelatedTopK(2)
    gen = torch.Generator().manual_seed(3)
    w = random_weights(S, (3,), 5, generator=gen).requires_grad_()
    mask = torch.tensor([[True, True, False, True, True], [False, True, True, False, True], [True] * 5])
    torch.autograd.gradcheck(lambda v: S.relax(S.masked(v, mask), 0.8), (w,))
