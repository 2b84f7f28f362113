"""sst.diagnostics: exact laws by enumeration, exact gradients, bias/variance summaries."""

from __future__ import annotations

import math

import pytest
import torch

import sst
import sst.estimators as E
from sst import diagnostics as D

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: extra threads only add contention


def test_categorical_and_binary_laws_sum_to_one():
    theta = torch.randn(5, dtype=torch.float64)
    for s in (sst.Categorical(), sst.Binary()):
        v, logp = D.enumerate_law(s, theta)
        assert torch.isclose(logp.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
        assert v.shape[1] == 5


def test_topk_law_matches_plackett_luce_and_sampler():
    """The enumerated top-k law sums to one, matches brute-force Plackett-Luce, and the structure's
    perturb+argmax sampler (chi-square)."""
    from scipy import stats

    torch.manual_seed(0)
    n, k = 5, 2
    s = sst.TopK(k)
    theta = torch.randn(n, dtype=torch.float64)
    v, logp = D.enumerate_law(s, theta)
    p = logp.exp()
    assert torch.isclose(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    q = torch.softmax(theta, -1)
    for row, pr in zip(v, p):
        i, j = torch.nonzero(row).squeeze(-1).tolist()
        brute = q[i] * q[j] / (1 - q[i]) + q[j] * q[i] / (1 - q[j])
        assert torch.isclose(pr, brute)
    m = 40000
    x = s.argmax(s.perturb(theta.expand(m, n)))
    counts = (x.double() @ v.T.double() > k - 0.5).double().sum(0)  # match rows to vertices
    assert counts.sum() == m
    chi = stats.chisquare(counts.numpy(), (p * m).numpy())
    assert chi.pvalue > 1e-3


@pytest.mark.parametrize("kind", ["categorical", "binary", "topk"])
def test_exact_gradient_matches_finite_differences(kind):
    torch.manual_seed(1)
    s = {"categorical": sst.Categorical(), "binary": sst.Binary(), "topk": sst.TopK(2)}[kind]
    theta = torch.randn(5, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    f = lambda x: ((x - t) ** 2).sum(-1) + x[:, 0] * x[:, 1]  # noqa: E731
    value, grad = D.exact_gradient(s, theta, f)
    eps = 1e-6
    fd = torch.stack([(D.exact_gradient(s, theta + eps * e, f)[0] - D.exact_gradient(s, theta - eps * e, f)[0])
                      / (2 * eps) for e in torch.eye(5, dtype=torch.float64)])
    torch.testing.assert_close(grad, fd, atol=1e-6, rtol=1e-5)
    v, logp = D.enumerate_law(s, theta)
    torch.testing.assert_close(value, (logp.exp() * f(v)).sum())


def test_binary_chunked_enumeration_matches_full():
    theta = torch.randn(9, dtype=torch.float64)
    f = lambda x: (x.sum(-1) - 4.5) ** 2  # noqa: E731
    full = D.exact_gradient(sst.Binary(), theta, f, chunk=2**9)
    chunked = D.exact_gradient(sst.Binary(), theta, f, chunk=37)
    torch.testing.assert_close(full[0], chunked[0])
    torch.testing.assert_close(full[1], chunked[1])


def test_exact_gradient_rejects_unsupported():
    with pytest.raises(ValueError, match="Categorical, Binary, TopK"):
        D.exact_gradient(object(), torch.randn(3), lambda x: x.sum(-1))
    with pytest.raises(ValueError, match="theta"):
        D.exact_gradient(sst.Categorical(), torch.randn(2, 3), lambda x: x.sum(-1))


def test_summarize_and_coupled_standard_error():
    torch.manual_seed(2)
    exact = torch.tensor([1.0, -2.0])
    draws = exact + torch.randn(40000, 2)
    r = D.summarize(draws, exact)
    assert r["max_abs_z"] < 4.5 and abs(r["variance"] - 2.0) < 0.1
    assert r["cosine"] > 0.99 and r["sign_agreement"] == 1.0
    shifted = D.summarize(draws + 0.1, exact)
    assert shifted["max_abs_z"] > 10
    coupled = D.summarize(draws, exact, batch_size=1000, coupled=True)
    assert math.isfinite(coupled["max_abs_z"])


def test_gradient_draws_shape_and_tune_runs():
    torch.manual_seed(3)
    s = sst.Binary()
    theta = torch.zeros(4)
    f = lambda x: ((x - 0.45) ** 2).sum(-1)  # noqa: E731
    est = E.build("relax", tau=0.5, event_shape=(4,))
    draws = D.gradient_draws(est, s, theta, f, num_draws=300, batch_size=100)
    assert draws.shape == (300, 4) and torch.isfinite(draws).all()
    before = [p.detach().clone() for p in est.parameters()]
    D.tune(est, s, theta, f, steps=3, batch_size=50)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, est.parameters()))
    with pytest.raises(ValueError, match="multiple"):
        D.gradient_draws(est, s, theta, f, num_draws=150, batch_size=100)


def test_gradient_moments_of_a_stochastic_loss():
    torch.manual_seed(0)
    a, b = torch.randn(3, requires_grad=True), torch.randn(2, 2, requires_grad=True)
    noise = torch.randn(50, 7) * torch.arange(1.0, 8.0) + 2.0  # draw r: the gradient is noise[r]
    it = iter(noise)

    def loss() -> torch.Tensor:
        n = next(it)
        return (a * n[:3]).sum() + (b.reshape(-1) * n[3:]).sum()

    m = D.gradient_moments(loss, [a, b], 50)
    assert m.draws == 50 and m.mean.dtype == torch.float64 and m.mean.shape == (7,)
    torch.testing.assert_close(m.mean, noise.double().mean(0))
    torch.testing.assert_close(m.var, noise.double().var(0))
    assert a.grad is None and b.grad is None  # .grad fields untouched
    s = m.summary()
    assert math.isclose(s["total_var"], float(noise.double().var(0).sum()))
    assert math.isclose(s["mean_sq_norm"], float(noise.double().mean(0).pow(2).sum()) - s["total_var"] / 50)
    with pytest.raises(ValueError, match="draws must be an integer >= 2"):
        D.gradient_moments(loss, [a], 1)
    with pytest.raises(ValueError, match="params must be a non-empty sequence"):
        D.gradient_moments(loss, [a.detach()], 3)
    with pytest.raises(ValueError, match="loss\\(\\) must return a 0-dim tensor"):
        D.gradient_moments(lambda: a * 1.0, [a], 3)
