"""sst.sample(..., sample_shape): independent draws as leading dims, batched; sst.schedules (issue 53, item 3)."""

from __future__ import annotations

import math

import pytest
import torch

import sst
from tests.sst.companions import random_weights
from tests.sst.test_sample import _chisquare_ok, _counts

STRUCTURES = [(sst.Categorical(), 5), (sst.Binary(), 4), (sst.TopK(2), 5), (sst.CorrelatedTopK(2), 5),
              (sst.SpanningTree(), 4), (sst.Arborescence(), 4), (sst.Permutation(), 3)]


@pytest.mark.parametrize("S,n", STRUCTURES)
@pytest.mark.parametrize("sample_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("hard", [False, True])
def test_shape_independence_and_gradient(S, n, sample_shape, hard):
    theta = random_weights(S, (2,), n).requires_grad_()
    x = sst.sample(S, theta, tau=0.7, hard=hard, generator=torch.Generator().manual_seed(0), sample_shape=sample_shape)
    assert x.shape == torch.Size(sample_shape) + theta.shape and x.dtype == theta.dtype
    if sample_shape:
        flat = x.detach().reshape(-1, *theta.shape)
        assert not all(torch.equal(flat[0], flat[i]) for i in range(1, flat.shape[0]))  # the draws differ
    upstream = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((x * upstream).sum(), theta)
    assert grad.shape == theta.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("S,n", STRUCTURES)
def test_draws_are_the_batched_perturbation_of_the_expanded_theta(S, n):
    """Same generator state: one call with sample_shape (4,) equals sampling theta expanded to (4, ...)."""
    theta = random_weights(S, (2,), n)
    a = sst.sample(S, theta, tau=0.5, generator=torch.Generator().manual_seed(5), sample_shape=(4,))
    b = sst.sample(S, theta.expand(4, *theta.shape), tau=0.5, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_generator_reproducible_and_default_shape_unchanged():
    theta = torch.randn(3, 6)
    S = sst.TopK(2)
    a = sst.sample(S, theta, generator=torch.Generator().manual_seed(3), sample_shape=(5,))
    b = sst.sample(S, theta, generator=torch.Generator().manual_seed(3), sample_shape=(5,))
    c = sst.sample(S, theta, generator=torch.Generator().manual_seed(4), sample_shape=(5,))
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = sst.sample(S, theta, generator=torch.Generator().manual_seed(3))
    e = sst.sample(S, theta, generator=torch.Generator().manual_seed(3), sample_shape=())
    assert torch.equal(d, e) and d.shape == theta.shape


def test_categorical_hard_draws_follow_softmax():
    theta = torch.tensor([0.3, -1.0, 1.2, 0.0, 0.5], dtype=torch.float64)
    x = sst.sample(sst.Categorical(), theta, hard=True, generator=torch.Generator().manual_seed(0),
                   sample_shape=(40_000,))
    assert x.shape == (40_000, 5)
    probs = torch.softmax(theta, -1)
    assert _chisquare_ok(_counts(x, sst.Categorical().enumerate(5, dtype=x.dtype)), probs) > 1e-3
    torch.testing.assert_close(x.mean(0), probs, atol=0.01, rtol=0)


def test_half_precision_keeps_the_dtype():
    theta = torch.randn(2, 4, dtype=torch.bfloat16)
    x = sst.sample(sst.Binary(), theta, sample_shape=(3,))
    assert x.shape == (3, 2, 4) and x.dtype == torch.bfloat16


@pytest.mark.parametrize("bad", [3, (-1,), (2.0,), "3", (True,)])
def test_bad_sample_shape_raises(bad):
    with pytest.raises(ValueError, match="sample_shape"):
        sst.sample(sst.Categorical(), torch.zeros(4), sample_shape=bad)


@pytest.mark.parametrize("method", ["l2x", "softsub", "ef_topk_fd"])
def test_subset_sampler_accepts_sample_shape(method):
    from sst.subset_baselines import SubsetSampler

    x = sst.sample(SubsetSampler(2, method), torch.randn(3, 6), tau=0.5, sample_shape=(4,))
    assert x.shape == (4, 3, 6)


# schedules ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau0,rate,tau_min,every", [(1.0, 1e-4, 0.5, 1000), (2.0, 3e-3, 0.1, 1), (0.7, 0.0, 0.3, 7)])
def test_exponential_decay_matches_the_formula(tau0, rate, tau_min, every):
    for step in (0, 1, 6, 7, 999, 1000, 1001, 12_345, 10**6):
        t = (step // every) * every
        want = max(tau_min, tau0 * math.exp(-rate * t))
        assert sst.schedules.exponential_decay(step, tau0=tau0, rate=rate, tau_min=tau_min, every=every) == want


def test_vae_anneals_with_the_library_schedule():
    from experiments.vae import task

    assert task.temperature is sst.schedules.exponential_decay
    assert task.temperature(1000, 1.0, 1e-4, 0.5, 1000) == math.exp(-0.1)
    assert task.temperature(10**6, 1.0, 1e-4, 0.5, 1000) == 0.5
