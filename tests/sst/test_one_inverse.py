"""The fast path of the exact SpanningTree / Arborescence relaxation (issue #51, item 1): one grounded inverse with
closed-form marginals and backward wherever its per-graph error bound allows, the log-space elimination for the
other graphs. Checks the error model the bound rests on (values and gradients within ``C eps n (K + 1)`` of the
elimination, K the largest entry of the grounded inverse) on graph families built to be hard for it, that the
bound sends hard graphs to the elimination and keeps typical ones, and that mixing the two in a batch changes
nothing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck, gradgradcheck

import sst
from sst.structures import _laplacian as lap
from tests.sst.companions import brute_marginals, spread_weights

EPS = torch.finfo(torch.float64).eps


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def _family(kind: str, batch: int, n: int, scale: float, gen: torch.Generator) -> Tensor:
    """Log-weights (batch, n, n) float64: ``rand`` N(0, scale^2); ``clusters``: three groups, links between them
    ``scale`` weaker; ``weaknode``: node 0 ``scale`` weaker; ``chain``: a path ``scale`` stronger than the rest;
    ``uniform``: U(0, scale)."""
    z = torch.randn(batch, n, n, generator=gen, dtype=torch.float64)
    if kind == "rand":
        return z * scale
    if kind == "clusters":
        c = torch.randint(0, 3, (batch, n), generator=gen)
        return z - scale * (c.unsqueeze(-1) != c.unsqueeze(-2))
    if kind == "weaknode":
        z[:, 0, :] -= scale
        z[:, :, 0] -= scale
        return z
    if kind == "chain":
        i = torch.arange(n - 1)
        z[:, i, i + 1] += scale
        z[:, i + 1, i] += scale
        return z
    return torch.rand(batch, n, n, generator=gen, dtype=torch.float64) * scale


def _exact(theta: Tensor, valid: Tensor, root: int | None) -> Tensor:
    n = theta.shape[-1]
    g = lap.eliminate_marginals(theta, valid, n - 1 if root is None else root)
    return g + g.mT if root is None else g


@pytest.mark.parametrize("root", [None, 0], ids=["tree", "arb"])
@pytest.mark.parametrize("kind", ["rand", "clusters", "weaknode", "chain", "uniform"])
def test_error_model_values_and_gradients(root, kind):
    """Wherever the one inverse is kept (K < 1e10, no failed factorisation), values and the backward pass of
    ``<c, mu>`` (random c) are within half the constants of the bound (C_VALUE, C_GRAD) times ``eps n (K + 1)`` of
    the elimination (plus the elimination's own ~1e-14), on families that make K large."""
    gen = torch.Generator().manual_seed(sum(map(ord, kind)) + (root is None))
    worst_v = worst_g = 0.0
    for n in (3, 6, 12, 25):
        valid = ~torch.eye(n, dtype=torch.bool)
        if root is not None:
            valid[:, root] = False
        for scale in (3.0, 8.0, 15.0, 25.0):
            theta = _family(kind, 12, n, scale, gen)
            if root is None:
                theta = 0.5 * (theta + theta.mT)
            c = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
            t1, t2 = theta.clone().requires_grad_(), theta.clone().requires_grad_()
            s1 = 0.5 * (t1 + t1.mT) if root is None else t1  # the symmetric input the tree path gets
            mu, g, failed = lap._OneInverse.apply(s1, valid, root, root is None, (math.inf, math.inf, math.inf))
            ex = _exact(0.5 * (t2 + t2.mT) if root is None else t2, valid, root)
            (d1,) = torch.autograd.grad((mu * c).sum(), t1)
            (d2,) = torch.autograd.grad((ex * c).sum(), t2)
            k = g.abs().flatten(-2).amax(-1)
            keep = ~failed & (k < 1e10)
            unit = EPS * n * (k + 1)
            err_v = (mu - ex).detach().abs().flatten(-2).amax(-1)
            err_g = (d1 - d2).abs().flatten(-2).amax(-1) / c.abs().flatten(-2).amax(-1)
            assert (err_v <= 0.5 * lap.C_VALUE * unit + 1e-14)[keep].all(), (n, scale, (err_v / unit)[keep].max())
            assert (err_g <= 0.5 * lap.C_GRAD * unit + 1e-13)[keep].all(), (n, scale, (err_g / unit)[keep].max())
            worst_v = max(worst_v, (err_v / unit)[keep].max().item() if keep.any() else 0.0)
            worst_g = max(worst_g, (err_g / unit)[keep].max().item() if keep.any() else 0.0)
    assert worst_v > 0 and worst_g > 0  # the comparison measured something


@pytest.mark.parametrize("S", [sst.SpanningTree(), sst.Arborescence(0)], ids=["tree", "arb"])
def test_typical_float32_graphs_take_the_fast_path(S):
    """NRI-like float32 weights (N(0, 2) at tau 0.5, n = 10 and 30): no graph needs the elimination."""
    gen = torch.Generator().manual_seed(0)
    for n in (10, 30):
        w = torch.randn(128, n, n, generator=gen)
        w = w + w.mT
        valid = ~torch.eye(n, dtype=torch.bool)
        root = None if isinstance(S, sst.SpanningTree) else 0
        if root is not None:
            valid[:, 0] = False
        theta = (w.double() + w.double().mT) * (0.5 / 0.5) if root is None else w.double() / 0.5
        fallback = lap._OneInverse.apply(theta, valid, root, root is None, lap.fast_tolerance(torch.float32))[2]
        assert not fallback.any()


@pytest.mark.parametrize("S", [sst.SpanningTree(), sst.Arborescence(1)], ids=["tree", "arb"])
def test_mixed_batch_equals_graph_by_graph(S):
    """A batch mixing easy graphs (one inverse) and spread-200 graphs (elimination) gives each graph the values and
    gradients it gets alone, and both match brute force."""
    gen = torch.Generator().manual_seed(3)
    n, tau = 5, 0.1
    w = torch.cat([spread_weights(S, (3,), n, 2.0, tau, generator=gen),
                   spread_weights(S, (3,), n, 200.0, tau, generator=gen)])[torch.tensor([0, 3, 1, 4, 2, 5])]
    c = torch.randn(w.shape, generator=gen, dtype=w.dtype)
    x = w.clone().requires_grad_()
    mu = S.relax(x, tau)
    (mu * c).sum().backward()
    torch.testing.assert_close(mu, brute_marginals(S, w, tau, n), rtol=0, atol=1e-12)
    for b in range(w.shape[0]):
        xb = w[b].clone().requires_grad_()
        mb = S.relax(xb, tau)
        (mb * c[b]).sum().backward()
        torch.testing.assert_close(mu[b], mb, rtol=0, atol=1e-13)
        torch.testing.assert_close(x.grad[b], xb.grad, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("root", [None, 2], ids=["tree", "arb"])
def test_one_inverse_twice_differentiable(root):
    """gradcheck and gradgradcheck of the closed-form backward (float64), the bound off (every graph kept)."""
    gen = torch.Generator().manual_seed(4)
    n = 4
    valid = ~torch.eye(n, dtype=torch.bool)
    if root is not None:
        valid[:, root] = False
    w = torch.randn(2, n, n, generator=gen, dtype=torch.float64).requires_grad_()

    def f(w: Tensor) -> Tensor:
        theta = 0.5 * (w + w.mT) if root is None else w
        return lap.one_inverse_marginals(theta, valid, root)

    assert gradcheck(f, (w,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(f, (w,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_tree_default_matches_the_elimination_on_a_float64_batch():
    """float64 at a moderate spread (most graphs by one inverse under the float64 bound or by the elimination):
    within 1e-13 of the elimination everywhere, gradients included."""
    gen = torch.Generator().manual_seed(5)
    n = 8
    w = torch.randn(64, n, n, generator=gen, dtype=torch.float64)
    w = w + w.mT
    valid = ~torch.eye(n, dtype=torch.bool)
    c = torch.randn(w.shape, generator=gen, dtype=w.dtype)
    x1, x2 = w.clone().requires_grad_(), w.clone().requires_grad_()
    mu = sst.SpanningTree().relax(x1, 1.0)
    ref = _exact(0.5 * (x2 + x2.mT), valid, None)
    torch.testing.assert_close(mu, ref, rtol=0, atol=1e-13)
    (mu * c).sum().backward()
    (ref * c).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("S", [sst.SpanningTree(), sst.Arborescence(0)], ids=["tree", "arb"])
def test_float32_gradients_relative_where_the_law_is_nearly_deterministic(S):
    """float32 weights at spread 12: the gradient within 1e-4 relative (float32 gives 2e-5) of the elimination's on
    the same (rounded) weights, also where it is tiny (>= 1e-6). The undirected backward is symmetrised in float64:
    returned unsymmetrised, the two directions' O(1) terms cancelled only after the cast to float32 (2e-2)."""
    gen = torch.Generator().manual_seed(0)
    for n in (3, 4, 5):
        w = spread_weights(S, (100,), n, 12.0, 1.0, generator=gen).float()
        c = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        x = w.clone().requires_grad_()
        (g,) = torch.autograd.grad((S.relax(x, 1.0).double() * c).sum(), x)
        valid = ~torch.eye(n, dtype=torch.bool)
        x2 = w.double().requires_grad_()
        if isinstance(S, sst.SpanningTree):
            theta = (0.5 * (x2.float() + x2.float().mT)).double()
            ref = _exact(theta, valid, None)
        else:
            valid[:, 0] = False
            ref = _exact(x2, valid, 0)
        (g2,) = torch.autograd.grad((ref * c).sum(), x2)
        scale = g2.abs().flatten(-2).amax(-1)
        err = (g.double() - g2).abs().flatten(-2).amax(-1)
        big = scale >= 1e-6
        assert (err[big] <= 1e-4 * scale[big]).all(), (n, (err[big] / scale[big]).max())


def test_lu_and_cholesky_agree_for_trees():
    """The LU factorisation (used for undirected graphs off the CPU) gives the Cholesky path's marginals, gradients
    and choice of graphs for the elimination, float32 and float64."""
    gen = torch.Generator().manual_seed(6)
    n = 7
    valid = ~torch.eye(n, dtype=torch.bool)
    for dtype, spread in ((torch.float32, 8.0), (torch.float32, 30.0), (torch.float64, 2.0)):
        w = spread_weights(sst.SpanningTree(), (16,), n, spread, 1.0, generator=gen)
        tol = lap.fast_tolerance(dtype)
        c = torch.randn(w.shape, generator=gen, dtype=w.dtype)
        out = []
        for chol in (True, False):
            x = w.clone().requires_grad_()
            mu = lap.one_inverse_marginals(0.5 * (x + x.mT), valid, tol=tol, cholesky=chol)
            (g,) = torch.autograd.grad((mu * c).sum(), x)
            fb = lap._OneInverse.apply(w, valid, None, chol, tol)[2]
            out.append((mu.detach(), g, fb))
        atol = 2 * tol[0]  # both within the bound of the exact marginals
        torch.testing.assert_close(out[0][0], out[1][0], rtol=0, atol=atol)
        torch.testing.assert_close(out[0][1], out[1][1], rtol=0, atol=4 * atol)
        assert torch.equal(out[0][2], out[1][2])
