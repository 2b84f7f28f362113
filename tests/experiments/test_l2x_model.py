"""L2X model pieces: subset precision, padding never selected by any relaxation, shapes, the HTML page."""

from __future__ import annotations

import pytest
import torch

from experiments.l2x.model import PAD_LOGIT, PAIRWISE_KINDS, L2XModel, Selector
from experiments.l2x.task import subset_precision

RELAXATIONS = [
    ("l2x", "l2x", 0.1),
    ("softsub", "softsub", 0.5),
    ("euclid_topk", "euclidean", 1.0),
    ("cat_ent_topk", "categorical_entropy", 1.0),
    ("bin_ent_topk", "binary_entropy", 1.0),
    ("ef_topk", "exp_family_entropy", 1.0),
    ("corr_topk", "exp_family_entropy", 1.0),
    ("ef_topk_fd", "ef_topk_fd", 1.0),
]


def _sampler(name: str, regularizer: str, k: int, tau: float, hard: bool = False):
    """L2X's sampler of configs/relaxation/<name>.yaml with ``regularizer`` and ``tau``, as BeerL2XTask builds it."""
    from experiments.common.relaxations import build_relaxation, relaxation_config
    from experiments.l2x.task import Sampler

    return Sampler(build_relaxation(relaxation_config(name, regularizer=regularizer, tau=tau), k=k, masked=True),
                   hard=hard)


def test_subset_precision_hand_made():
    # review 0: k=3 selects positions 0, 1, 4; gold spans cover 1..4 -> 2 of 3 inside.
    # review 1: selects 2, 3 and a padding position 5 (short review); gold covers 3 -> 1 of 3.
    selected = torch.tensor([[1, 1, 0, 0, 1, 0], [0, 0, 1, 1, 0, 1]])
    gold = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    prec = subset_precision(selected, gold, k=3)
    torch.testing.assert_close(prec, torch.tensor([2 / 3, 1 / 3]))
    assert float(prec.mean()) == pytest.approx(0.5)


def _batch(B=4, L=24, d=8, lengths=(24, 15, 11, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(L).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    emb = torch.randn(B, L, d, generator=g) * mask.unsqueeze(-1)
    return emb, mask


@pytest.mark.parametrize("pairwise", PAIRWISE_KINDS)
def test_selector_shapes_and_padding_logits(pairwise):
    torch.manual_seed(0)
    emb, mask = _batch()
    unary, pw = Selector(8, filters=6, pairwise=pairwise)(emb, mask)
    assert unary.shape == (4, 24) and torch.isfinite(unary).all()
    assert torch.all(unary[~mask] == PAD_LOGIT) and torch.all(unary[mask] > PAD_LOGIT / 2)
    if pairwise is None:
        assert pw is None
    else:
        assert pw.shape == (4, 23) and torch.isfinite(pw).all()
        assert torch.all(pw[~(mask[:, 1:] & mask[:, :-1])] == 0)


def test_attract_head_is_the_conv_head_through_a_softplus():
    """Same weights: the attract head's pairwise logits are softplus of the conv head's, so all positive."""
    emb, mask = _batch()
    torch.manual_seed(0)
    conv = Selector(8, filters=6, pairwise="conv").eval()
    torch.manual_seed(0)
    attract = Selector(8, filters=6, pairwise="attract").eval()
    (u0, p0), (u1, p1) = conv(emb, mask), attract(emb, mask)
    both = mask[:, 1:] & mask[:, :-1]
    torch.testing.assert_close(u1, u0)
    torch.testing.assert_close(p1[both], torch.nn.functional.softplus(p0[both]))
    assert torch.all(p1[both] > 0) and torch.all(p1[~both] == 0)
    with pytest.raises(ValueError, match="pairwise must be one of"):
        Selector(8, filters=6, pairwise="repel")


def test_fixed_head_gives_the_offset_and_learns_nothing():
    emb, mask = _batch()
    sel = Selector(8, filters=6, pairwise="fixed", pairwise_offset=3.0)
    _, pw = sel(emb, mask)
    both = mask[:, 1:] & mask[:, :-1]
    assert torch.all(pw[both] == 3.0) and torch.all(pw[~both] == 0)
    assert not pw.requires_grad
    plain = Selector(8, filters=6, pairwise=None)
    assert sum(p.numel() for p in sel.parameters()) == sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("pairwise", ["conv", "attract", "scalar", "fixed"])
def test_pairwise_offset_shifts_real_pairs_only(pairwise):
    emb, mask = _batch()
    torch.manual_seed(0)
    base = Selector(8, filters=6, pairwise=pairwise).eval()
    torch.manual_seed(0)
    shifted = Selector(8, filters=6, pairwise=pairwise, pairwise_offset=4.0).eval()
    (u0, p0), (u1, p1) = base(emb, mask), shifted(emb, mask)
    both = mask[:, 1:] & mask[:, :-1]
    torch.testing.assert_close(u1, u0)
    torch.testing.assert_close(p1[both], p0[both] + 4.0)
    assert torch.all(p1[~both] == 0)


def test_selector_ignores_padding_content():
    """What sits in padded positions cannot change the logits of real tokens."""
    torch.manual_seed(0)
    emb, mask = _batch()
    sel = Selector(8, filters=6, pairwise="conv").eval()
    noisy = emb + torch.randn_like(emb) * (~mask).unsqueeze(-1)
    u1, p1 = sel(emb, mask)
    u2, p2 = sel(noisy, mask)
    torch.testing.assert_close(u1, u2)
    torch.testing.assert_close(p1, p2)


@pytest.mark.parametrize("name, regularizer, tau", RELAXATIONS)
def test_padding_never_selected(name, regularizer, tau):
    torch.manual_seed(1)
    k = 10
    emb, mask = _batch()
    selector = Selector(8, filters=6, pairwise="conv" if name == "corr_topk" else None)
    # large real logits make the "pad is never chosen" claim non-trivial
    with torch.no_grad():
        unary, pw = selector(emb, mask)
    unary = torch.where(mask, unary * 0 - 30.0, unary).requires_grad_(True)
    for hard in (False, True):
        sampler = _sampler(name, regularizer, k, tau, hard=hard)
        z = sampler.relaxed(unary, pw, mask)
        assert z.shape == (4, 24) and torch.isfinite(z).all()
        assert float(z.detach()[~mask].abs().max()) < 1e-6, f"{name} put mass on padding"
        assert float(z.detach().sum(-1).max()) <= k + 1e-3
        z.sum().backward() if not hard else (z * torch.randn_like(z)).sum().backward()
        assert torch.isfinite(unary.grad).all()
        unary.grad = None
    mode = _sampler(name, regularizer, k, tau).mode(unary.detach(), pw, mask)
    assert torch.all(mode[~mask] == 0) and torch.all(mode.sum(-1) == k)


def test_chain_padding_is_excluded_exactly():
    """corr_topk: padding is out of the chain at any logit scale (very negative pairwise logits make swapping a
    real adjacent pair for padding pay under a merely large negative PAD_LOGIT), and a review shorter than k
    gets its words plus the first padding positions, with marginals 1 (to float32 rounding) and zero gradient."""
    k = 10
    emb, mask = _batch(lengths=(24, 15, 11, 6))
    torch.manual_seed(0)
    unary = (torch.randn(4, 24) * 50 - 5e3).masked_fill(~mask, PAD_LOGIT).requires_grad_()
    pairwise = torch.full((4, 23), -1e5).masked_fill(~(mask[:, 1:] & mask[:, :-1]), 0.0)
    sampler = _sampler("corr_topk", "exp_family_entropy", k, 1.0)
    mode = sampler.mode(unary.detach(), pairwise, mask)
    assert torch.all(mode.sum(-1) == k)
    assert torch.all(mode[:3][~mask[:3]] == 0), "padding selected in a review of length >= k"
    assert torch.equal(mode[3], (torch.arange(24) < k).float()), "a short review: its words, then fillers"
    z = sampler.relaxed(unary, pairwise, mask)
    assert float(z.detach()[:3][~mask[:3]].abs().max()) < 1e-30  # exp of "log 0", clipped at exp(-80)
    torch.testing.assert_close(z.detach()[3], (torch.arange(24) < k).float(), rtol=0, atol=1e-5)
    (z * torch.randn_like(z)).sum().backward()
    assert torch.isfinite(unary.grad).all() and float(unary.grad[3].abs().max()) < 1e-6
    assert torch.all(unary.grad[~mask] == 0)


@pytest.mark.parametrize("regularizer", ["exp_family_entropy", "euclidean", "categorical_entropy", "binary_entropy"])
def test_topk_rows_keep_padding_out_when_logits_drift_below_pad_logit(regularizer):
    """The top-k rows mask padding relative to each review's logits (sst.TopK.masked): selector logits far
    below PAD_LOGIT still select no padding in a review of at least k words, and a shorter review gets its
    words plus the first padding positions, with zero gradient."""
    k = 10
    _, mask = _batch(lengths=(24, 15, 11, 6))
    torch.manual_seed(0)
    unary = (torch.randn(4, 24) * 50 + 10 * PAD_LOGIT).masked_fill(~mask, PAD_LOGIT).requires_grad_()
    sampler = _sampler("ef_topk", regularizer, k, 1.0)
    mode = sampler.mode(unary.detach(), None, mask)
    assert torch.all(mode.sum(-1) == k) and torch.all(mode[:3][~mask[:3]] == 0)
    assert torch.equal(mode[3], (torch.arange(24) < k).float()), "a short review: its words, then fillers"
    z = sampler.relaxed(unary, None, mask)
    assert float(z.detach()[:3][~mask[:3]].abs().max()) < 1e-30
    torch.testing.assert_close(z.detach()[3], (torch.arange(24) < k).float(), rtol=0, atol=1e-6)
    (z * torch.randn_like(z)).sum().backward()
    assert torch.isfinite(unary.grad).all() and torch.all(unary.grad[3] == 0) and torch.all(unary.grad[~mask] == 0)


def test_model_extra_state_roundtrip():
    words = ["<pad>", "<unk>", "a", "b"]
    m = L2XModel(torch.randn(4, 5), words, filters=3, hidden=7, pairwise="conv")
    state = m.state_dict()
    m2 = L2XModel(torch.zeros(4, 5), [""] * 4, filters=3, hidden=7, pairwise="conv")
    m2.load_state_dict(state)
    assert m2.words == words and torch.equal(m2.embeddings, m.embeddings)
