"""TopK.masked: variable-length rows (padding out of every subset and every relaxation); the mask checks and
half-precision handling it shares with CorrelatedTopK.masked (whose own tests are in test_correlated_topk_masked.py)."""

from __future__ import annotations

import pytest
import torch

import sst
from sst.structures._masking import subset_plan
from tests.sst.companions import brute_marginals, random_weights

REGULARIZERS = sst.TopK.regularizers


def _rows(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """(32, n) masks: random ones, plus an all-True row, an all-False row and a row with exactly k allowed."""
    mask = torch.rand(32, n, generator=gen) < 0.6
    mask[0] = True
    mask[1] = False
    mask[2] = torch.arange(n) >= n - k
    return mask


@pytest.mark.parametrize("regularizer", REGULARIZERS)
@pytest.mark.parametrize("n,k", [(6, 2), (7, 3), (5, 5)])
def test_masked_equals_the_structure_on_the_allowed_positions(regularizer, n, k):
    """A row with more than k allowed positions: the relaxation of its allowed entries alone, 0 elsewhere; a
    row with at most k: 1 on its allowed positions and its first fillers, 0 elsewhere."""
    S = sst.TopK(k)
    gen = torch.Generator().manual_seed(n * 10 + k)
    w = random_weights(S, (32,), n, scale=2.0, generator=gen)
    mask = _rows(n, k, gen)
    wm = S.masked(w, mask)
    z, x = S.relax(wm, 0.7, regularizer), S.argmax(wm)
    keep, single = subset_plan(mask, k)
    for i in range(32):
        if single[i, 0]:
            expected = keep[i].to(w.dtype)
            torch.testing.assert_close(z[i], expected, rtol=0, atol=1e-12)
            assert torch.equal(x[i], expected)
            continue
        sub = sst.TopK(k)
        torch.testing.assert_close(z[i][mask[i]], sub.relax(w[i][mask[i]], 0.7, regularizer), rtol=0, atol=1e-9)
        if not mask[i].all():
            assert float(z[i][~mask[i]].abs().max()) < 1e-300  # exp_family_entropy: weights clip at exp(-700)
        assert torch.equal(x[i][mask[i]], sub.argmax(w[i][mask[i]])) and not x[i][~mask[i]].any()


def test_masked_exp_family_matches_brute_force_restricted():
    k, n = 3, 7
    S = sst.TopK(k)
    gen = torch.Generator().manual_seed(1)
    w = random_weights(S, (32,), n, generator=gen)
    mask = _rows(n, k, gen)
    keep, _ = subset_plan(mask, k)
    z = S.relax(S.masked(w, mask), 0.5)
    inside = w.masked_fill(~keep, -1e4)  # a brute-force reference: a big gap is exact at this scale
    torch.testing.assert_close(z, brute_marginals(S, inside, 0.5, n), rtol=0, atol=1e-10)


@pytest.mark.parametrize("regularizer", REGULARIZERS)
def test_masked_holds_when_the_logits_drift_far_below_any_fixed_padding_logit(regularizer):
    """Selector logits of -1e5 (a fixed padding logit of -1e4 would now be the largest): padding stays out, in
    float32, for the hard sample, the relaxed sample and the gradient."""
    k, n = 4, 12
    S = sst.TopK(k)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([12, 8, 5, 2])
    mask = torch.arange(n) < lengths[:, None]
    w = (torch.randn(4, n, generator=gen) * 3 - 1e5).requires_grad_()
    wm = S.masked(w, mask)
    hard = sst.sample(S, wm, tau=1.0, regularizer=regularizer, hard=True, generator=gen)
    assert torch.all(hard.sum(-1) == k) and not hard[:3][~mask[:3]].any()
    assert torch.equal(hard[3], (torch.arange(n) < k).float()), "a short row: its positions, then the first fillers"
    z = sst.sample(S, wm, tau=1.0, regularizer=regularizer, generator=gen)
    assert float(z.detach()[:3][~mask[:3]].abs().max()) < 1e-34  # exp_family_entropy: weights clip at exp(-80)
    torch.testing.assert_close(z[3].detach(), (torch.arange(n) < k).float(), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad((z * torch.randn(z.shape, generator=gen)).sum(), w)
    assert torch.isfinite(grad).all() and torch.all(grad[~mask] == 0) and torch.all(grad[3] == 0)
    assert grad[0].abs().sum() > 0


@pytest.mark.parametrize("regularizer", REGULARIZERS)
def test_masked_gradcheck(regularizer):
    S = sst.TopK(2)
    gen = torch.Generator().manual_seed(3)
    w = random_weights(S, (4,), 6, generator=gen).requires_grad_()
    mask = torch.tensor([[True, True, False, True, True, False], [False, True, True, False, True, True],
                         [True] * 6, [False, True, False, False, True, False]])
    torch.autograd.gradcheck(lambda v: S.relax(S.masked(v, mask), 0.8, regularizer), (w,))


SHARED = [pytest.param(sst.TopK(2), 5, id="TopK"), pytest.param(sst.CorrelatedTopK(2), 9, id="CorrelatedTopK")]


@pytest.mark.parametrize("S,width", SHARED)
def test_masked_validates_the_mask(S, width):
    """Both structures' ``masked``: n = 5 positions (w of width 5, or 2 * 5 - 1 for the chain)."""
    w = torch.randn(3, width)
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape \\(3, 5\\)"):
        S.masked(w, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a bool"):
        S.masked(w, torch.ones(3, 5))
    with pytest.raises(ValueError, match="mask must be a bool.*got list"):
        S.masked(w, [[True] * 5] * 3)


def test_masked_validates_w():
    with pytest.raises(ValueError, match="k=2 must be <= n"):
        sst.TopK(2).masked(torch.randn(3, 1), torch.ones(3, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="2n - 1"):
        sst.CorrelatedTopK(2).masked(torch.randn(3, 8), torch.ones(3, 4, dtype=torch.bool))


@pytest.mark.parametrize("S,width", SHARED)
def test_masked_half_precision_comes_back_as_float32(S, width):
    mask = torch.tensor([[True, True, False, True, False]])
    for dtype in (torch.float16, torch.bfloat16):
        wm = S.masked(torch.randn(1, width).to(dtype), mask)
        assert wm.dtype == torch.float32 and torch.isfinite(wm).all()
        for regularizer in S.regularizers:
            x = S.relax(wm, 0.5, regularizer)[0, :5]
            assert float(x[~mask[0]].abs().max()) < 1e-30 and abs(float(x.sum()) - 2) < 1e-5
