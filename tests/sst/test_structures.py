"""Brute-force correctness of every structure: argmax, exp-family marginals, enumerate, shapes and dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sst
from tests.sst.companions import COMPANIONS, brute_argmax, brute_marginals, random_weights

# (structure, sizes n for the brute-force checks): every constructor of every companion
ALL = [(S, c.sizes_for(S)) for c in COMPANIONS.values() for S in c.structures()]
# structures whose default relaxation is the exp-family marginal (Gibbs) computation
GIBBS = [(S, c.sizes_for(S)) for c in COMPANIONS.values() if c.gibbs for S in c.structures()]


def _ids(cases):
    return [f"{S!r}-{getattr(S, 'max_range', '')}" for S, _ in cases]


@pytest.mark.parametrize("S,ns", ALL, ids=_ids(ALL))
def test_argmax_matches_brute_force(S, ns):
    g = torch.Generator().manual_seed(0)
    for n in ns:
        w = random_weights(S, (7,), n, generator=g)
        assert torch.equal(S.argmax(w), brute_argmax(S, w, n)), (S, n)


@pytest.mark.parametrize("S,ns", GIBBS, ids=_ids(GIBBS))
@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_default_relaxation_is_gibbs_marginals(S, ns, tau):
    """relax(w, tau) = marginals of p(x) ∝ exp(<w, x> / tau) by enumeration, to 1e-6 in float64."""
    g = torch.Generator().manual_seed(1)
    for n in ns:
        w = random_weights(S, (2, 3), n, generator=g)
        mu = S.relax(w, tau)
        ref = brute_marginals(S, w, tau, n)
        assert mu.shape == w.shape and mu.dtype == w.dtype
        torch.testing.assert_close(mu, ref, rtol=0, atol=1e-6, msg=lambda m, n=n: f"{S} n={n}: {m}")


@pytest.mark.parametrize("S,ns", GIBBS, ids=_ids(GIBBS))
def test_gibbs_marginals_float32(S, ns):
    g = torch.Generator().manual_seed(2)
    n = ns[-1]
    w = random_weights(S, (4,), n, generator=g)
    mu = S.relax(w.float(), 0.7)
    assert mu.dtype == torch.float32
    torch.testing.assert_close(mu.double(), brute_marginals(S, w, 0.7, n), rtol=0, atol=2e-5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), data=st.data(), batch=st.lists(st.integers(1, 3), max_size=2),
       tau=st.floats(0.2, 5.0), scale=st.floats(0.1, 3.0), seed=st.integers(0, 2**16))
def test_topk_marginals_hypothesis(n, data, batch, tau, scale, seed):
    k = data.draw(st.integers(1, n))
    S = sst.TopK(k)
    w = random_weights(S, tuple(batch), n, scale=scale, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(S.relax(w, tau), brute_marginals(S, w, tau, n), rtol=0, atol=1e-6)
    assert torch.equal(S.argmax(w).sum(-1), torch.full(tuple(batch), float(k), dtype=w.dtype))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), data=st.data(), tau=st.floats(0.3, 3.0), seed=st.integers(0, 2**16))
def test_correlated_topk_hypothesis(n, data, tau, seed):
    k = data.draw(st.integers(1, n))
    S = sst.CorrelatedTopK(k)
    w = random_weights(S, (2,), n, scale=2.0, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(S.relax(w, tau), brute_marginals(S, w, tau, n), rtol=0, atol=1e-6)
    assert torch.equal(S.argmax(w), brute_argmax(S, w, n))


def test_topk_large_n_paths_agree():
    """The linear-space k-subset recursion (float32 / float64 accumulators) and the exact log-space tree agree."""
    from sst.structures import _ksubset, _logspace

    g = torch.Generator().manual_seed(3)
    for n, k in [(50, 5), (300, 10), (64, 32)]:
        theta = torch.randn(3, n, dtype=torch.float64, generator=g) * 4
        ref = _logspace.log_esp(theta, k)[..., k]
        seq = _logspace.log_esp_sequential(theta, k)[..., k]
        torch.testing.assert_close(ref, seq, rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(_ksubset.log_partition(theta, k), ref, rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(_ksubset.log_partition(theta.float(), k).double(), ref, rtol=1e-5, atol=1e-3)


def test_topk_huge_binomial_uses_exact_tree():
    """C(n, m) beyond float64's range falls back to the log-space tree; marginals still sum to k."""
    S = sst.TopK(600)
    w = torch.randn(2, 1300, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    mu = S.relax(w, 1.0)
    assert torch.isfinite(mu).all()
    torch.testing.assert_close(mu.sum(-1), torch.full((2,), 600.0, dtype=torch.float64))


@pytest.mark.parametrize("S,ns", ALL, ids=_ids(ALL))
def test_enumerate_shapes_and_argmax_vertices(S, ns):
    n = ns[-1]
    V = S.enumerate(n)
    counts = {
        sst.Categorical: n, sst.Binary: 2**n, sst.Permutation: math.factorial(n),
        sst.SpanningTree: n ** max(n - 2, 0), sst.Arborescence: n ** max(n - 2, 0),
    }
    if isinstance(S, (sst.TopK, sst.CorrelatedTopK)):
        assert V.shape[0] == math.comb(n, S.k)
    else:
        assert V.shape[0] == counts[type(S)]
    assert V.dtype == torch.get_default_dtype()
    assert len(torch.unique(V.flatten(1), dim=0)) == V.shape[0]  # no duplicates
    # every argmax is one of the vertices
    w = random_weights(S, (5,), n, dtype=torch.float32)
    x = S.argmax(w)
    assert x.dtype == torch.float32 and x.shape == w.shape
    assert ((x.flatten(1).unsqueeze(1) == V.flatten(1).unsqueeze(0)).all(-1).any(-1)).all()


@pytest.mark.parametrize("S,ns", ALL, ids=_ids(ALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_shape_and_batch_dims(S, ns, dtype):
    n = ns[-1]
    w = random_weights(S, (2, 3), n, dtype=dtype)
    for out in (S.argmax(w), S.relax(w, 0.5), S.perturb(w), sst.sample(S, w, 0.5), sst.sample(S, w, 0.5, hard=True)):
        assert out.shape == w.shape and out.dtype == dtype and out.device == w.device
    # leading dims are plain batch dims: same result row by row
    torch.testing.assert_close(S.relax(w, 0.5)[1, 2], S.relax(w[1, 2], 0.5))
    assert torch.equal(S.argmax(w)[0, 1], S.argmax(w[0, 1]))


@pytest.mark.parametrize("S,ns", ALL, ids=_ids(ALL))
@pytest.mark.parametrize("batch", [(0,), (2, 0)])
def test_empty_batch(S, ns, batch):
    """A size-0 batch gives size-0 results everywhere, and a backward pass (issue #51 D2: Permutation's relax and
    sample raised ``RuntimeError: amax()``)."""
    w = random_weights(S, batch, ns[-1]).requires_grad_(True)
    outs = (S.argmax(w), S.relax(w, 0.5), S.perturb(w), sst.sample(S, w, 0.5), sst.sample(S, w, 0.5, hard=True))
    for out in outs:
        assert out.shape == w.shape and out.dtype == w.dtype
    sum(o.sum() for o in outs[1:]).backward()
    assert w.grad.shape == w.shape


def test_issue_reproducer_permutation_empty_batch():
    x = sst.Permutation().relax(torch.randn(0, 3, 3), 1.0)
    assert x.shape == (0, 3, 3)
    assert sst.sample(sst.Permutation(), torch.randn(0, 3, 3), 1.0, hard=True).shape == (0, 3, 3)


@pytest.mark.parametrize("S,ns", ALL, ids=_ids(ALL))
def test_half_precision_relax(S, ns):
    w = random_weights(S, (2,), ns[-1], dtype=torch.float32).bfloat16()
    x = S.relax(w, 1.0)
    assert x.dtype == torch.bfloat16 and torch.isfinite(x.float()).all()


def test_spanning_tree_score_counts_each_edge_once():
    S = sst.SpanningTree()
    w = random_weights(S, (), 4)
    x = S.argmax(w)
    assert x.sum() == 2 * 3 and torch.equal(x, x.T) and x.diagonal().sum() == 0
    torch.testing.assert_close(S.score(w, x), (w * x).sum() / 2)


def test_spanning_tree_perturb_is_symmetric_one_draw_per_edge():
    S = sst.SpanningTree()
    theta = torch.zeros(3, 5, 5)
    u = S.perturb(theta, generator=torch.Generator().manual_seed(0))
    assert torch.equal(u, u.transpose(-1, -2))
    assert (u.diagonal(dim1=-2, dim2=-1) == 0).all()
    assert len(torch.unique(torch.triu(u[0], 1)[torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)])) == 10


def test_arborescence_structure():
    S = sst.Arborescence(root=1)
    w = random_weights(S, (6,), 5)
    x = S.argmax(w)
    assert (x[:, :, 1] == 0).all() and (x.diagonal(dim1=-2, dim2=-1) == 0).all()
    parents = x.sum(-2)
    assert (parents[:, [0, 2, 3, 4]] == 1).all()
    mu = S.relax(w, 1.0)
    torch.testing.assert_close(mu.sum(-2)[:, [0, 2, 3, 4]], torch.ones(6, 4, dtype=mu.dtype))


def test_large_graphs_fast_paths_run():
    """Bigger instances than enumeration allows: valid trees, marginals that sum to n - 1."""
    g = torch.Generator().manual_seed(5)
    S = sst.SpanningTree()
    w = random_weights(S, (4,), 40, generator=g)
    x = S.argmax(w)
    assert (x.sum((-2, -1)) == 2 * 39).all()
    mu = S.relax(w, 0.5)
    torch.testing.assert_close(mu.sum((-2, -1)), torch.full((4,), 78.0, dtype=mu.dtype))
    A = sst.Arborescence()
    wa = torch.randn(2, 30, 30, dtype=torch.float64, generator=g)
    xa = A.argmax(wa)
    assert (xa.sum(-2)[:, 1:] == 1).all()
    # the argmax's score beats random arborescences sampled by perturbation
    for _ in range(5):
        other = A.argmax(A.perturb(wa, generator=g))
        assert (A.score(wa, xa) >= A.score(wa, other) - 1e-9).all()
