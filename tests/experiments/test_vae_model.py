"""Shapes and bounds of the discrete VAE model, and its latent-usage statistics (no data, no sst needed)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from experiments.vae.model import DiscreteVAE, iw_neg_elbo, neg_elbo
from experiments.vae.task import temperature
from experiments.vae.usage import latent_usage


def _hard(model, generator):
    """Exact hard draws from q(z|x), written independently of sst for this test."""
    def sample(logits):
        if model.latent == "categorical":
            idx = torch.distributions.Categorical(logits=logits).sample()
            return F.one_hot(idx, logits.shape[-1]).to(logits.dtype)
        return torch.bernoulli(torch.sigmoid(logits), generator=generator)
    return sample


@pytest.mark.parametrize("latent,event", [("categorical", (20, 10)), ("bernoulli", (200,))])
def test_shapes(latent, event):
    torch.manual_seed(0)
    m = DiscreteVAE(latent, num_vars=event[0])
    assert m.event_shape == event and m.latent_dim == 200
    assert [l.out_features for l in m.encoder if isinstance(l, torch.nn.Linear)] == [512, 256, 200]
    assert [l.out_features for l in m.decoder if isinstance(l, torch.nn.Linear)] == [256, 512, 784]
    x = torch.bernoulli(torch.full((7, 784), 0.3))
    logits = m.encode(x)
    assert logits.shape == (7, *event)
    z = m.sample_prior(7)
    assert z.shape == (7, *event) and m.decode(z).shape == (7, 784)
    assert m.recon_nll(x, z).shape == (7,)
    assert m.recon_nll(x, torch.stack([z, z, z])).shape == (3, 7)
    kl = m.kl(logits)
    assert kl.shape == (7,) and (kl >= -1e-5).all()
    assert m.log_q(logits, z).shape == (7,)
    # zero logits: posterior = prior, so KL = 0 and log q = log prior
    zero = torch.zeros(7, *event)
    assert torch.allclose(m.kl(zero), torch.zeros(7), atol=1e-5)
    assert torch.allclose(m.log_q(zero, z), torch.full((7,), m.log_prior()), atol=1e-4)
    sample = _hard(m, torch.Generator().manual_seed(0))
    elbo, nll, kl2 = neg_elbo(m, x, sample)
    assert elbo.shape == nll.shape == kl2.shape == (7,) and torch.allclose(elbo, nll + kl2)
    iw = iw_neg_elbo(m, x, sample, num_samples=5)
    assert iw.shape == (7,) and torch.isfinite(iw).all()


def test_iw_bound_tighter_than_elbo():
    torch.manual_seed(1)
    m = DiscreteVAE("categorical", num_vars=4, num_classes=3, hidden=(16,))
    x = torch.bernoulli(torch.full((20, 784), 0.2))
    sample = _hard(m, None)
    elbo = torch.stack([neg_elbo(m, x, sample)[0] for _ in range(200)]).mean(0)
    iw = iw_neg_elbo(m, x, sample, num_samples=200)
    assert iw.mean() < elbo.mean()
    # with 3**4 = 81 latent states and 200 samples the IW bound is close to -log p(x) by enumeration
    states = torch.cartesian_prod(*[torch.arange(3)] * 4)
    z = F.one_hot(states, 3).float().unsqueeze(1)  # (81, 1, 4, 3)
    log_px = torch.logsumexp(-m.recon_nll(x, z) + m.log_prior(), 0)
    assert (iw + log_px).abs().mean() < 0.5 and (elbo + log_px).mean() > 0


def test_temperature_schedule():
    assert temperature(0, 1.0, 1e-4, 0.5, 1000) == 1.0
    assert temperature(999, 1.0, 1e-4, 0.5, 1000) == 1.0
    assert temperature(1000, 1.0, 1e-4, 0.5, 1000) == pytest.approx(math.exp(-0.1))
    assert temperature(10**6, 1.0, 1e-4, 0.5, 1000) == 0.5


def test_latent_usage_on_hand_made_posteriors():
    big = 50.0
    logits = torch.zeros(4, 3, 5)
    logits[torch.arange(4), 0, torch.arange(4)] = big  # variable 0: decided, a different class per image
    logits[:, 2, 3] = big                              # variable 2: decided, the same class for every image
    u = latent_usage(logits, "categorical")            # variable 1: uniform
    log5 = math.log(5)
    assert u["kl"] == pytest.approx(torch.tensor([log5, 0.0, log5], dtype=torch.float64), abs=1e-12)
    assert u["entropy"] == pytest.approx(torch.tensor([0.0, log5, 0.0], dtype=torch.float64), abs=1e-12)
    assert u["mutual_info"] == pytest.approx(torch.tensor([math.log(4), 0.0, 0.0], dtype=torch.float64), abs=1e-12)
    assert u["decided"].tolist() == [1.0, 0.0, 1.0]
    # a Bernoulli variable is the two-class categorical with logits (0, l)
    b = torch.randn(6, 7) * 3
    ub = latent_usage(b, "bernoulli")
    uc = latent_usage(torch.stack([torch.zeros_like(b), b], -1), "categorical")
    for key in ub:
        assert ub[key] == pytest.approx(uc[key], abs=1e-12)
    assert ub["kl"] + ub["entropy"] == pytest.approx(torch.full((7,), math.log(2), dtype=torch.float64))
    assert (ub["mutual_info"] >= -1e-12).all() and (ub["mutual_info"] <= ub["kl"] + 1e-12).all()


def test_latent_usage_bad_input():
    with pytest.raises(ValueError, match=r"logits must be \(N, V, K\)"):
        latent_usage(torch.zeros(4, 3), "categorical")
    with pytest.raises(ValueError, match=r"logits must be \(N, V\)"):
        latent_usage(torch.zeros(4, 3, 2), "bernoulli")
    with pytest.raises(ValueError, match="latent must be"):
        latent_usage(torch.zeros(4, 3), "gaussian")
    with pytest.raises(ValueError, match="decided must be in"):
        latent_usage(torch.zeros(4, 3), "bernoulli", decided=1.0)
