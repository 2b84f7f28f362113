"""The numba kernels (k-subset marginals, Prim) against the PyTorch paths, and the backend switch."""

from __future__ import annotations

import pytest
import torch

import sst
from sst.structures import _backend, _ksubset

SHAPES = [(3, 7, 1), (3, 7, 3), (5, 12, 6), (2, 5, 4), (4, 50, 25), (40, 350, 10), (2, 60, 59), (1, 2, 1)]


def _both(theta: torch.Tensor, k: int, g: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for backend in ("torch", "numba"):
        t = theta.clone().requires_grad_()
        mu = _ksubset.marginals(t, k, backend=backend)
        (mu * g).sum().backward()
        out.append((mu.detach(), t.grad))
    return out


@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b,n,k", SHAPES)
def test_numba_matches_torch(dtype, b, n, k):
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(n * 31 + k)
    theta = (torch.randn(b, n, generator=gen) * 3).to(dtype)
    g = torch.randn(b, n, generator=gen).to(dtype)
    (mu_t, gr_t), (mu_n, gr_n) = _both(theta, k, g)
    # the same recursion in numba's LLVM code and in torch's kernels, summed in other orders: float32 gradients
    # came within 0.35 of this tolerance, the same under ATEN_CPU_CAPABILITY=avx2 and default,
    # MKL_ENABLE_INSTRUCTIONS=AVX2 and NUMBA_CPU_NAME=generic or haswell
    tol = dict(rtol=1e-5, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(mu_n, mu_t, **tol)
    torch.testing.assert_close(gr_n, gr_t, **tol)


@pytest.mark.kernel_sensitive
def test_numba_extreme_logits_and_batch_shape():
    """Clipped weights (logit gaps beyond exp's range), ties, and leading batch dimensions."""
    pytest.importorskip("numba")
    theta = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.0], [200.0, -200.0, 0.0, 1e-3, 90.0]],
                          [[5.0, 5.0, -5.0, -5.0, 0.0], [-1e4, 1e4, 3.0, 3.0, 3.0]]])
    g = torch.linspace(-1.0, 1.0, 5).expand_as(theta)
    (mu_t, gr_t), (mu_n, gr_n) = _both(theta, 2, g)
    assert torch.isfinite(mu_n).all() and torch.isfinite(gr_n).all()
    torch.testing.assert_close(mu_n, mu_t, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(gr_n, gr_t, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(mu_n.sum(-1), torch.full((2, 2), 2.0))


@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_reads_neg_inf(dtype):
    """-inf ("never selected") read by the kernels themselves (the PyTorch path puts it far below the row): the
    same values and gradients, exactly 0 at -inf, including rows with exactly k or k + 1 finite entries."""
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(9)
    theta = (torch.randn(5, 12, generator=gen) * 3).to(dtype)
    ninf = float("-inf")
    theta[0, :2] = ninf  # 10 finite
    theta[1, 4:] = ninf  # exactly k + 1 = 4 finite
    theta[2, 3:] = ninf  # exactly k = 3 finite
    theta[3, ::2] = ninf
    g = torch.randn(5, 12, generator=gen).to(dtype)
    (mu_t, gr_t), (mu_n, gr_n) = _both(theta, 3, g)
    never = torch.isneginf(theta)
    assert (mu_n[never] == 0).all() and (gr_n[never] == 0).all()
    tol = dict(rtol=1e-5, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(mu_n, mu_t, **tol)
    torch.testing.assert_close(gr_n, gr_t, **tol)
    torch.testing.assert_close(mu_n.sum(-1), torch.full((5,), 3.0, dtype=dtype), **tol)
    torch.testing.assert_close(mu_n[2, :3], torch.ones(3, dtype=dtype))


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_gradcheck(backend):
    """Both custom autograd functions (the other structure tests reach the PyTorch one only on GPU)."""
    if backend == "numba":
        pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(3)
    for n, k in [(6, 2), (9, 4), (12, 11)]:
        theta = torch.randn(3, n, generator=gen, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t, k=k: _ksubset.marginals(t, k, backend=backend), (theta,))


def test_auto_uses_numba_on_cpu_when_available(monkeypatch):
    pytest.importorskip("numba")
    calls = []
    monkeypatch.setattr(_ksubset._KSubsetMarginalsCPU, "apply", lambda *a: calls.append(1) or torch.zeros(2, 5))
    _ksubset.marginals(torch.randn(2, 5), 2)
    assert calls == [1]


def test_without_numba_auto_falls_back_and_numba_is_refused(monkeypatch):
    monkeypatch.setattr(_backend, "numba_kernels", lambda: None)
    theta = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(_ksubset.marginals(theta, 3), _ksubset.marginals(theta, 3, backend="torch"))
    with pytest.raises(ValueError, match="numba"):
        _ksubset.marginals(theta, 3, backend="numba")


def test_bad_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        _ksubset.marginals(torch.randn(2, 5), 2, backend="cuda")


def test_topk_backend_argument():
    theta = torch.randn(4, 9, dtype=torch.float64)
    ref = sst.TopK(3, backend="torch").relax(theta, 0.7)
    torch.testing.assert_close(sst.TopK(3).relax(theta, 0.7), ref)
    with pytest.raises(ValueError, match="backend must be one of"):
        sst.TopK(3, backend="gpu")


@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_prim_numba_matches_torch(n):
    """Same trees, ties and -inf weights included, float32 and float64, leading batch dimensions."""
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(n)
    for dtype in (torch.float32, torch.float64):
        w = torch.randn(3, 5, n, n, generator=gen).to(dtype)
        w = w + w.transpose(-1, -2)
        ties = torch.randint(0, 3, (3, 5, n, n), generator=gen).to(dtype)
        ties = ties + ties.transpose(-1, -2)
        ninf = w.masked_fill((w > 1.5) | (w > 1.5).transpose(-1, -2), float("-inf"))
        for ww in (w, ties, ninf):
            a = sst.SpanningTree(backend="torch").argmax(ww)
            b = sst.SpanningTree(backend="numba").argmax(ww)
            assert torch.equal(a, b)
            if n > 1:
                assert torch.equal(a.sum((-1, -2)), torch.full((3, 5), 2.0 * (n - 1), dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_prim_half_precision(dtype):
    """Issue #51 D4: the numba path raised NotImplementedError (float16) / TypeError (bfloat16), also through
    ``sst.sample(..., hard=True)``. Now it reads them in float32 (exact): the same trees as the PyTorch path and
    as the float32 argmax of the same values, ties and -inf included."""
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(3, 5, 7, 7, generator=gen)
    ties = torch.randint(0, 3, (3, 5, 7, 7), generator=gen).float()
    ninf = w.masked_fill((w > 1.5) | (w > 1.5).transpose(-1, -2), float("-inf"))
    for ww in (w, ties, ninf):
        ww = (ww + ww.transpose(-1, -2)).to(dtype)  # symmetric: (w + w^T) / 2 is exact
        a = sst.SpanningTree(backend="numba").argmax(ww)
        assert a.dtype == dtype
        assert torch.equal(a, sst.SpanningTree(backend="torch").argmax(ww))
        assert torch.equal(a, sst.SpanningTree(backend="numba").argmax(ww.float()).to(dtype))
        assert torch.equal(a.sum((-1, -2)), torch.full((3, 5), 12.0, dtype=dtype))
    theta = (w + w.transpose(-1, -2)).to(dtype).requires_grad_(True)
    x = sst.sample(sst.SpanningTree(), theta, 0.5, hard=True, generator=torch.Generator().manual_seed(0))
    assert x.dtype == dtype and torch.equal(x.sum((-1, -2)), torch.full((3, 5), 12.0, dtype=dtype))
    x.sum().backward()
    assert theta.grad.dtype == dtype and torch.isfinite(theta.grad.float()).all()


def test_spanning_tree_backend_argument(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of"):
        sst.SpanningTree(backend="cpp")
    monkeypatch.setattr(_backend, "numba_kernels", lambda: None)
    with pytest.raises(ValueError, match="numba"):
        sst.SpanningTree(backend="numba").argmax(torch.zeros(2, 4, 4))
    assert sst.SpanningTree().argmax(torch.zeros(2, 4, 4)).sum() == 12
