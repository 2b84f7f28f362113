"""The non-Gibbs regularizers satisfy their optimality conditions; every relaxation has exact gradients
(gradcheck in float64); nothing returns NaN or inf for extreme weights and temperatures."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import sst
from sst.structures._capped import _CappedSimplex
from sst.structures._chain import _ChainMarginals
from sst.structures._sinkhorn import _Sinkhorn
from tests.sst.companions import random_weights

G = torch.Generator().manual_seed(0)


def _w(shape, scale=1.0):
    return torch.randn(shape, dtype=torch.float64, generator=G) * scale


# ----------------------------------------------------------------------------- optimality conditions
def test_categorical_entropy_is_softmax_and_euclidean_is_sparsemax():
    S = sst.Categorical()
    w = _w((5, 7), 2.0)
    torch.testing.assert_close(S.relax(w, 0.5), torch.softmax(w / 0.5, -1))
    x = S.relax(w, 0.5, "euclidean")
    z = w / 0.5
    torch.testing.assert_close(x.sum(-1), torch.ones(5, dtype=w.dtype))
    assert (x >= 0).all()
    # KKT: on the support z - x = nu (constant); off it z <= nu
    for zi, xi in zip(z, x):
        supp = xi > 0
        nu = (zi[supp] - xi[supp]).mean()
        torch.testing.assert_close(zi[supp] - xi[supp], nu.expand(int(supp.sum())))
        assert (zi[~supp] <= nu + 1e-12).all()


def test_binary_is_sigmoid():
    w = _w((4, 6), 3.0)
    torch.testing.assert_close(sst.Binary().relax(w, 0.3), torch.sigmoid(w / 0.3))


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_topk_euclidean_is_capped_simplex_projection(k, tau):
    w = _w((6, 9), 2.0)
    x = sst.TopK(k).relax(w, tau, "euclidean")
    z = w / tau
    torch.testing.assert_close(x.sum(-1), torch.full((6,), float(k), dtype=w.dtype))
    assert (x >= 0).all() and (x <= 1).all()
    for zi, xi in zip(z, x):  # x = clip(z - nu, 0, 1)
        mid = (xi > 1e-12) & (xi < 1 - 1e-12)
        if mid.any():
            nu = (zi[mid] - xi[mid]).mean()
            torch.testing.assert_close(xi, (zi - nu).clamp(0, 1), rtol=0, atol=1e-9)
        else:
            top = xi > 0.5
            assert zi[top].min() >= zi[~top].max() if (~top).any() else True


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_topk_entropic_capped_solutions(k, tau):
    w = _w((6, 9), 2.0)
    z = w / tau
    S = sst.TopK(k)
    x = S.relax(w, tau, "categorical_entropy")  # min(1, exp(z - nu))
    torch.testing.assert_close(x.sum(-1), torch.full((6,), float(k), dtype=w.dtype))
    for zi, xi in zip(z, x):
        free = xi < 1 - 1e-12
        nu = (zi[free] - torch.log(xi[free])).mean()
        torch.testing.assert_close(xi, torch.exp(zi - nu).clamp(max=1), rtol=1e-9, atol=1e-12)
    x = S.relax(w, tau, "binary_entropy")  # sigmoid(z - nu)
    torch.testing.assert_close(x.sum(-1), torch.full((6,), float(k), dtype=w.dtype))
    for zi, xi in zip(z, x):
        best = (xi - 0.5).abs().argmin()  # logit is best conditioned there
        nu = zi[best] - torch.logit(xi[best])
        torch.testing.assert_close(xi, torch.sigmoid(zi - nu), rtol=1e-8, atol=1e-10)


def test_topk_k_equals_n_is_all_ones():
    w = _w((3, 4)).requires_grad_()
    for reg in sst.TopK.regularizers:
        x = sst.TopK(4).relax(w, 0.5, reg)
        torch.testing.assert_close(x, torch.ones_like(w))
        x.sum().backward()
        assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("n", [1, 3, 5])
def test_sinkhorn_doubly_stochastic_and_scaling_form(n):
    w = _w((4, n, n), 2.0)
    tau = 0.7
    P = sst.Permutation().relax(w, tau)
    torch.testing.assert_close(P.sum(-1), torch.ones(4, n, dtype=w.dtype), rtol=0, atol=1e-9)
    torch.testing.assert_close(P.sum(-2), torch.ones(4, n, dtype=w.dtype), rtol=0, atol=1e-9)
    R = torch.log(P) - w / tau  # must be a_i + b_j
    resid = R - R.mean(-1, keepdim=True) - R.mean(-2, keepdim=True) + R.mean((-2, -1), keepdim=True)
    assert resid.abs().max() < 1e-9


# ----------------------------------------------------------------------------- gradients
RELAXATIONS = [
    (sst.Categorical(), "entropy", 5), (sst.Categorical(), "euclidean", 5),
    (sst.Binary(), "binary_entropy", 4),
    *[(sst.TopK(3), r, 6) for r in sst.TopK.regularizers],
    (sst.TopK(1), "exp_family_entropy", 4),
    (sst.CorrelatedTopK(2), "exp_family_entropy", 5), (sst.CorrelatedTopK(4), "exp_family_entropy", 6),
    (sst.SpanningTree(), "exp_family_entropy", 5),
    (sst.Arborescence(), "exp_family_entropy", 4), (sst.Arborescence(root=-1), "exp_family_entropy", 4),
    (sst.Permutation(), "entropy", 4),
]


@pytest.mark.parametrize("S,reg,n", RELAXATIONS, ids=[f"{S!r}-{r}" for S, r, _ in RELAXATIONS])
def test_relax_gradcheck(S, reg, n):
    w = random_weights(S, (2,), n, generator=G).requires_grad_()
    assert gradcheck(lambda w: S.relax(w, 0.8, reg), (w,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_custom_functions_gradcheck_directly():
    z = _w((3, 7)).requires_grad_()
    for kind in ("euclidean", "categorical_entropy", "binary_entropy"):
        assert gradcheck(lambda z, kind=kind: _CappedSimplex.apply(z, 3, kind), (z,))
    s = _w((2, 4, 4)).requires_grad_()
    assert gradcheck(lambda s: _Sinkhorn.apply(s, 1e-12, 200), (s,))
    assert gradgradcheck(lambda s: _Sinkhorn.apply(s, 1e-12, 200), (s,))
    a, b = _w((2, 6)).requires_grad_(), _w((2, 5)).requires_grad_()
    assert gradcheck(lambda a, b: _ChainMarginals.apply(a, b, 3), (a, b))
    h, soft = _w((3,)), _w((3,)).requires_grad_()
    out = sst.straight_through(h, soft)
    assert torch.equal(out, h)
    g = _w((3,))
    (out * g).sum().backward()
    assert torch.equal(soft.grad, g)


def _float32_grad_error(S, w64, g64, tau, reg=None) -> float:
    """Relative error of the float32 vector-Jacobian product ``g64^T d relax / dw`` against float64."""
    grads = {}
    for dtype in (torch.float32, torch.float64):
        w = w64.to(dtype).requires_grad_()
        (grads[dtype],) = torch.autograd.grad(S.relax(w, tau, reg), w, g64.to(dtype))
    ref = grads[torch.float64]
    return float((grads[torch.float32].double() - ref).norm() / ref.norm().clamp_min(1e-300))


@pytest.mark.parametrize("S,reg,n", RELAXATIONS, ids=[f"{S!r}-{r}" for S, r, _ in RELAXATIONS])
def test_float32_backward_scales_with_the_upstream_gradient(S, reg, n):
    """A backward pass is linear in the upstream gradient; in float32 its relative error must not grow when
    that gradient is small (typical losses give |g| ~ 1e-5). Compared with float64 on the same weights."""
    w64 = random_weights(S, (4,), n, generator=G).double() * 2
    for scale in (1.0, 1e-6):
        err = _float32_grad_error(S, w64, _w(w64.shape, scale), 0.7, reg)
        assert err < 1e-3, f"|g| ~ {scale:g}: relative error {err:.2e}"


def test_chain_backward_is_accurate_in_float32_for_small_upstream_gradients():
    """The same at L2X's size (n = 200, k = 10), down to |g| ~ 1e-9: before the per-row rescaling of the chain's
    tangent pass its error here was in the percent range, and training runs drifted to logits in the
    thousands (results/bench/chain_backward_precision.json)."""
    torch.manual_seed(0)
    S = sst.CorrelatedTopK(10)
    w64 = torch.randn(8, 2 * 200 - 1, dtype=torch.float64) * 2
    for scale in (1.0, 1e-5, 1e-9):
        err = _float32_grad_error(S, w64, torch.randn(8, 2 * 200 - 1, dtype=torch.float64) * scale, 1.0)
        assert err < 1e-4, f"|g| ~ {scale:g}: relative error {err:.2e}"


def test_chain_float32_at_large_weights():
    """A saturated selector's weights (unary sd 300, pairwise around -100): the log-space recursion's rounding
    grows with the size of its values, which the unary shift by the mean of the k largest keeps near 0 for
    the likely configurations (the row-maximum shift gave 2.4e-4 and 1.9e-2 here)."""
    gen = torch.Generator().manual_seed(1)
    S = sst.CorrelatedTopK(10)
    a = torch.randn(8, 200, dtype=torch.float64, generator=gen) * 300
    b = torch.randn(8, 199, dtype=torch.float64, generator=gen) * 300 / 9 - 100
    w64 = torch.cat([a, b], -1)
    x32, x64 = S.relax(w64.float(), 1.0), S.relax(w64, 1.0)
    assert float((x32.double() - x64).abs().max()) < 5e-5
    err = _float32_grad_error(S, w64, torch.randn(w64.shape, dtype=torch.float64, generator=gen) * 1e-5, 1.0)
    assert err < 5e-3, f"relative error {err:.2e}"


def test_double_backward_where_supported():
    """The autograd k-subset path, the capped-simplex solvers and the matrix-tree marginals are twice
    differentiable (the fast k-subset and chain backward passes are once differentiable)."""
    from sst.structures._ksubset import marginals_autograd

    w = _w((2, 6)).requires_grad_()
    assert gradgradcheck(lambda w: marginals_autograd(w / 0.7, 2), (w,))
    assert gradgradcheck(lambda w: sst.TopK(2).relax(w, 0.7, "binary_entropy"), (w,))
    ws = random_weights(sst.SpanningTree(), (1,), 4, generator=G).requires_grad_()
    assert gradgradcheck(lambda w: sst.SpanningTree().relax(w, 0.7), (ws,))


def test_topk_float32_gradient_matches_float64():
    w = _w((4, 50), 3.0)
    g = _w((4, 50))
    grads = []
    for dt in (torch.float32, torch.float64):
        wd = w.to(dt).requires_grad_()
        (sst.TopK(7).relax(wd, 0.5) * g.to(dt)).sum().backward()
        grads.append(wd.grad.double())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- robustness
ROBUST = [
    (sst.Categorical(), 8), (sst.Binary(), 8), (sst.TopK(3), 12), (sst.TopK(11), 12),
    (sst.CorrelatedTopK(3), 10), (sst.SpanningTree(), 7), (sst.Arborescence(), 7), (sst.Permutation(), 5),
]


@pytest.mark.parametrize("S,n", ROBUST, ids=[repr(S) for S, _ in ROBUST])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_no_nan_or_inf_for_extreme_weights(S, n, dtype):
    g = torch.Generator().manual_seed(7)
    for scale in (1e-3, 1.0, 1e3):
        for tau in (1e-3, 1.0, 1e3):
            for reg in S.regularizers:
                w = random_weights(S, (3,), n, dtype=dtype, scale=scale, generator=g)
                w[0] = w[0].sign() * 1e3  # magnitudes exactly 1e3
                w = w.requires_grad_()
                x = S.relax(w, tau, reg)
                assert torch.isfinite(x).all(), (S, reg, scale, tau)
                (x * torch.randn(x.shape, dtype=dtype, generator=g)).sum().backward()
                assert torch.isfinite(w.grad).all(), (S, reg, scale, tau)
                assert torch.isfinite(S.argmax(w)).all()


@pytest.mark.parametrize("S,n", ROBUST, ids=[repr(S) for S, _ in ROBUST])
def test_tau_to_zero_relaxed_tends_to_hard(S, n):
    g = torch.Generator().manual_seed(8)
    theta = random_weights(S, (4,), n, generator=g)
    u = S.perturb(theta, generator=g)
    x = S.argmax(u)
    taus = (1.0, 1e-1, 1e-2, 1e-3, 1e-5)
    for reg in S.regularizers:
        errs = [(S.relax(u, tau, reg) - x).abs().max().item() for tau in taus]
        assert errs[-1] < 1e-2, (reg, errs)
        assert all(e2 <= e1 + 1e-9 for e1, e2 in zip(errs, errs[1:])), (reg, errs)
