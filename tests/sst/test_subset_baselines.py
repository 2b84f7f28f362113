"""sst.subset_baselines: L2X (Chen et al. 2018), SoftSub (Xie & Ermon 2019) and the released code's
finite-difference E.F. top-k."""

from __future__ import annotations

import pytest
import torch

import sst
from sst.noise import gumbel_like
from sst.subset_baselines import ef_topk_fd_subset, l2x_subset, softsub_subset

FUNCS = [(l2x_subset, 0.1), (softsub_subset, 0.5), (ef_topk_fd_subset, 1.0)]


@pytest.mark.parametrize("fn, tau", FUNCS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_ranges_and_sums(fn, tau, dtype):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 2, 50, generator=g, dtype=dtype)
    k = 5
    z = fn(theta, k, tau, generator=g)
    assert z.shape == theta.shape and z.dtype == dtype and torch.isfinite(z).all() and (z >= 0).all()
    sums = z.sum(-1)
    if fn is softsub_subset:
        torch.testing.assert_close(sums, torch.full_like(sums, k))  # k softmaxes, each sums to 1
    else:
        assert (z <= 1 + 1e-6).all() and (sums >= 1 - 1e-6).all() and (sums <= k + 1e-6).all()
        assert float(sums.mean()) > k - 1  # draws rarely overlap with 50 items and t = 0.1
    hard = fn(theta, k, tau, hard=True, generator=g)
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and torch.all(hard.sum(-1) == k)


@pytest.mark.parametrize("fn, tau", FUNCS)
def test_mask_gets_no_mass_and_gradients_are_finite(fn, tau):
    g = torch.Generator().manual_seed(1)
    theta = (torch.randn(4, 30, generator=g) * 5).requires_grad_(True)
    mask = torch.arange(30).unsqueeze(0) < torch.tensor([[30], [12], [8], [0]])  # last row fully masked
    with torch.no_grad():
        theta[~mask] += 100.0  # masked items would win if the mask were ignored
    for hard in (False, True):
        z = fn(theta, 5, tau, mask=mask, hard=hard, generator=g)
        assert torch.isfinite(z).all()
        assert float(z.detach()[:3][~mask[:3]].abs().max()) == 0.0
        if hard:
            assert torch.all(z[:3].sum(-1) == 5) and torch.all(z[:3][~mask[:3]] == 0)
        (z * torch.arange(30.0)).sum().backward()
        assert torch.isfinite(theta.grad).all()
        theta.grad = None


def test_low_temperature_limits():
    """Tiny temperature, well-separated logits: SoftSub gives the top-k of theta; L2X's k independent draws all
    pick the same argmax, so its union is one item (why L2X can select fewer than k distinct words)."""
    theta = torch.tensor([[5.0, -30.0, 40.0, -30.0, 20.0, -30.0, 60.0]])
    top3 = torch.zeros_like(theta).scatter_(-1, theta.topk(3).indices, 1.0)
    top1 = torch.zeros_like(theta).scatter_(-1, theta.topk(1).indices, 1.0)
    z = softsub_subset(theta, 3, 1e-3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, top3, atol=1e-4, rtol=0)
    z = l2x_subset(theta, 3, 1e-3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, top1, atol=1e-4, rtol=0)


def test_softsub_matches_the_recursion():
    """One step by hand: w1 = u; p1 = softmax(u/t); w2 = w1 + log(1 - p1); out = p1 + softmax(w2/t)."""
    theta = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64)
    u = theta + gumbel_like(theta, generator=torch.Generator().manual_seed(7))
    p1 = torch.softmax(u / 0.5, -1)
    p2 = torch.softmax((u + torch.log1p(-p1)) / 0.5, -1)
    z = softsub_subset(theta, 2, 0.5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(z, p1 + p2)


@pytest.mark.parametrize("fn", [l2x_subset, softsub_subset])
def test_bad_input(fn):
    with pytest.raises(ValueError, match="k"):
        fn(torch.zeros(2, 4), 5, 0.5)
    with pytest.raises(ValueError, match="tau"):
        fn(torch.zeros(2, 4), 2, 0.0)
    with pytest.raises(ValueError, match="mask"):
        fn(torch.zeros(2, 4), 2, 0.5, mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        fn(torch.tensor([0.0, float("nan"), 1.0]), 2, 0.5)


def test_ef_topk_fd_forward_is_exact_and_backward_is_the_released_finite_difference():
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(4, 30, generator=g, dtype=torch.float64, requires_grad=True)
    k, tau = 5, 0.7
    z = ef_topk_fd_subset(theta, k, tau, generator=torch.Generator().manual_seed(1))
    noisy = theta + gumbel_like(theta, generator=torch.Generator().manual_seed(1))
    exact = sst.TopK(k).relax(noisy, tau)
    torch.testing.assert_close(z, exact)
    for scale, close in ((1e-3, True), (300.0, False)):  # eps * |g| small: agrees; large: a secant, not a slope
        up = scale * torch.randn(4, 30, generator=g, dtype=torch.float64)
        (fd,) = torch.autograd.grad((z * up).sum(), theta, retain_graph=True)
        (ex,) = torch.autograd.grad((exact * up).sum(), theta, retain_graph=True)
        err = float((fd - ex).abs().max() / ex.abs().max())
        assert (err < 1e-4) if close else (err > 1e-2), (scale, err)
    with pytest.raises(ValueError, match="eps"):
        ef_topk_fd_subset(theta, k, tau, eps=0.0)


@pytest.mark.parametrize("fn, tau", FUNCS)
def test_hard_never_picks_padding_when_relaxed_entries_underflow(fn, tau):
    # One allowed item dominates so much that every other allowed item's relaxed value is exactly 0, as is the
    # padding's: the straight-through top-k must still break that tie in favour of allowed items.
    theta = torch.zeros(2, 30)
    mask = torch.arange(30).unsqueeze(0) >= torch.tensor([[22], [10]])  # padding first: 8 and 20 items allowed
    theta[:, -1] = 1.0e3
    theta[~mask] = 100.0
    z = fn(theta, 5, tau, mask=mask, hard=True, generator=torch.Generator().manual_seed(0))
    assert torch.all(z.sum(-1) == 5) and torch.all(z[~mask] == 0) and torch.all(z[:, -1] == 1)


# ------------------------------------------------------------------------------------------------ as structures
@pytest.mark.parametrize("method, fn", [("l2x", l2x_subset), ("softsub", softsub_subset),
                                        ("ef_topk_fd", ef_topk_fd_subset)])
@pytest.mark.parametrize("hard", [False, True])
def test_subset_sampler_draws_its_method_through_sst_sample_and_the_estimators(method, fn, hard):
    """sst.sample and the relaxed / straight_through estimators draw SubsetSampler's method, mask included."""
    import sst
    import sst.estimators
    from sst.subset_baselines import SubsetSampler

    theta = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.arange(8) < torch.tensor([[8], [5], [2]])
    S = SubsetSampler(3, method).with_mask(mask)
    want = fn(theta, 3, 0.5, mask=mask, hard=hard, generator=torch.Generator().manual_seed(1))
    got = sst.sample(S, theta, tau=0.5, regularizer=method, hard=hard, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    est = sst.estimators.build("straight_through" if hard else "relaxed", tau=0.5, regularizer=method)
    out = est(S, theta, lambda z: z.sum(-1), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.x, want, rtol=0, atol=0)
    assert S.argmax(theta).sum(-1).eq(3).all() and S.regularizers == (method,)
    with pytest.raises(ValueError, match="no relax"):
        S.relax(theta, 0.5, method)


def test_subset_sampler_and_finite_difference_topk_check_their_arguments():
    import sst
    from sst.subset_baselines import FiniteDifferenceTopK, SubsetSampler

    with pytest.raises(ValueError, match="method must be one of l2x, softsub, ef_topk_fd"):
        SubsetSampler(3, "sparsemax")
    with pytest.raises(ValueError, match="eps"):
        FiniteDifferenceTopK(3, eps=0.0)
    theta = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fd = FiniteDifferenceTopK(3, eps=1e-5)  # forward: the exact marginals; backward: close to exact for small eps
    a, b = theta.clone().requires_grad_(True), theta.clone().requires_grad_(True)
    x = fd.relax(a, tau=0.5)
    y = sst.TopK(3).relax(b, tau=0.5)
    torch.testing.assert_close(x, y)
    g = torch.randn(2, 6, dtype=torch.float64)
    (x * g).sum().backward()
    (y * g).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)
