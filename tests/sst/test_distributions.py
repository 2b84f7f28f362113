"""sst.distributions: Gibbs laws against brute-force enumeration, SoftmaxTrick against sst.sample (issue 53, item 1)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution, kl_divergence

import sst
from sst.distributions import Gibbs, KHot, SoftmaxTrick
from tests.sst.companions import random_weights
from tests.sst.test_sample import _chisquare_ok, _counts

GIBBS = [(sst.Categorical(), 5), (sst.Binary(), 4), (sst.TopK(2), 5), (sst.TopK(3), 6), (sst.TopK(1), 4),
         (sst.CorrelatedTopK(2), 5), (sst.CorrelatedTopK(3), 6), (sst.SpanningTree(), 4), (sst.SpanningTree(), 5),
         (sst.Arborescence(), 4), (sst.Arborescence(root=-1), 4)]
TEMPERATURES = [0.05, 1.0, 10.0]
F64 = torch.float64


def _logits(n: int, batch: tuple[int, ...] = (3,), seed: int = 0, scale: float = 1.0,
            S: sst.Structure | None = None) -> torch.Tensor:
    """Random N(0, scale^2) logits with S's layout (default: a vector of n)."""
    return random_weights(S or sst.Categorical(), batch, n, scale=scale, generator=torch.Generator().manual_seed(seed))


def _enumerated(S: sst.Structure, logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices V (M, *event) and their exact log-probabilities (M, *batch) by brute force."""
    nd = S.event_ndim
    n = (logits.shape[-1] + 1) // 2 if isinstance(S, sst.CorrelatedTopK) else logits.shape[-1]
    V = S.enumerate(n, dtype=F64)
    batch = logits.shape[:-nd]
    scores = S.score((logits / tau).unsqueeze(0), V.reshape(V.shape[0], *(1,) * len(batch), *V.shape[1:]))
    return V, scores - torch.logsumexp(scores, 0)


def _at(V: torch.Tensor, S: sst.Structure, nbatch: int) -> torch.Tensor:
    """V (M, *event) as (M, 1 x nbatch, *event), to broadcast over a batch."""
    return V.reshape(V.shape[0], *(1,) * nbatch, *V.shape[1:])


@pytest.mark.parametrize("S,n", GIBBS)
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_gibbs_exact_quantities_equal_enumeration(S, n, tau):
    logits = _logits(n, (2, 3), seed=n, S=S)
    d = Gibbs(S, logits, tau, validate_args=True)
    V, lp = _enumerated(S, logits, tau)  # (M, *event), (M, 2, 3)
    P = lp.exp()
    Vb = _at(V, S, 2)
    got = d.log_prob(Vb)  # one vertex per leading entry, broadcast over the batch
    assert got.shape == (V.shape[0], 2, 3)
    torch.testing.assert_close(got.exp().sum(0), torch.ones(2, 3, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(got, lp, rtol=0, atol=1e-10)
    torch.testing.assert_close(d.log_partition, torch.logsumexp(S.score(logits / tau, Vb), 0), rtol=0, atol=1e-10)
    mean = (P.reshape(*P.shape, *(1,) * S.event_ndim) * Vb).sum(0)
    torch.testing.assert_close(d.mean, mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(d.entropy(), -(P * lp).sum(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(d.mode, S.argmax(logits), rtol=0, atol=0)
    q = Gibbs(S, _logits(n, (2, 3), seed=n + 100, S=S), 1.3)
    lq = q.log_prob(Vb)
    kl = kl_divergence(d, q)
    assert kl.shape == (2, 3)
    torch.testing.assert_close(kl, (P * (lp - lq)).sum(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(kl_divergence(d, d), torch.zeros(2, 3, dtype=F64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("S,n", GIBBS)
def test_gibbs_sampler_passes_chi_square(S, n):
    logits = _logits(n, (), seed=7, S=S)
    d = Gibbs(S, logits, 0.8)
    x = d.sample((200_000,), generator=torch.Generator().manual_seed(11))  # the sample size
    assert x.shape == (200_000, *logits.shape) and x.dtype == F64 and not x.requires_grad
    assert bool(d.support.check(x).all())
    V, lp = _enumerated(S, logits, 0.8)
    assert _chisquare_ok(_counts(x, V), lp.exp()) > 1e-3


def test_topk_sampler_batched_rows_are_their_own_laws():
    """Each batch row and each temperature: the draws of that row follow that row's law (no mixing)."""
    S, n = sst.TopK(2), 5
    logits = _logits(n, (3,), seed=3, scale=2.0)
    tau = torch.tensor([0.5, 1.0, 4.0], dtype=F64)
    x = Gibbs(S, logits, tau).sample((20_000,), generator=torch.Generator().manual_seed(5))
    for b in range(3):
        V, lp = _enumerated(S, logits[b], float(tau[b]))
        assert _chisquare_ok(_counts(x[:, b], V), lp.exp()) > 1e-3


def test_gibbs_never_selects_neg_inf():
    logits = torch.tensor([[0.0, float("-inf"), 1.0, 0.5]], dtype=F64)
    for S in (sst.Categorical(), sst.Binary(), sst.TopK(2)):
        d = Gibbs(S, logits)
        assert torch.isfinite(d.log_partition).all()
        x = d.sample((2000,), generator=torch.Generator().manual_seed(0))
        assert (x[..., 1] == 0).all()
        assert d.mean[0, 1] == 0 and torch.isfinite(d.entropy()).all()
        assert torch.isfinite(d.log_prob(x)).all()


@pytest.mark.parametrize("S", [sst.SpanningTree(), sst.Arborescence(root=1)])
def test_graph_sampler_batched_temperatures_and_absent_edges(S):
    """Rows with other temperatures and an absent edge: each row's draws follow its own law."""
    n = 4
    logits = _logits(n, (2,), seed=5, scale=1.5, S=S)
    logits[1, 0, 2] = logits[1, 2, 0] = float("-inf")
    tau = torch.tensor([0.5, 2.0], dtype=F64)
    d = Gibbs(S, logits, tau)
    x = d.sample((30_000,), generator=torch.Generator().manual_seed(6))
    assert (x[:, 1, 0, 2] == 0).all() and (x[:, 1, 2, 0] == 0).all() and bool(d.support.check(x).all())
    for b in range(2):
        V, lp = _enumerated(S, logits[b], float(tau[b]))
        counts, keep = _counts(x[:, b], V), torch.isfinite(lp)
        assert (counts[~keep] == 0).all()
        assert _chisquare_ok(counts[keep], lp[keep].exp()) > 1e-3
        torch.testing.assert_close(d.log_prob(V.unsqueeze(1))[:, b], lp, rtol=0, atol=1e-10)  # -inf: absent edge


GRADIENT = [(sst.Categorical(), 5), (sst.Binary(), 4), (sst.TopK(2), 5), (sst.CorrelatedTopK(2), 5),
            (sst.SpanningTree(), 4), (sst.Arborescence(), 4)]


@pytest.mark.parametrize("S,n", GRADIENT)
def test_gibbs_gradients_of_log_partition_are_the_mean(S, n):
    logits = _logits(n, (2,), seed=1, S=S).requires_grad_()
    d = Gibbs(S, logits, 0.7)
    (g,) = torch.autograd.grad(d.log_partition.sum(), logits)
    half = 0.5 if isinstance(S, sst.SpanningTree) else 1.0  # a symmetric edge weight is read as (w_ij + w_ji) / 2
    torch.testing.assert_close(g * 0.7, half * d.mean.detach(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("S,n", GRADIENT)
@pytest.mark.parametrize("sample_shape", [(), (4,), (2, 3)])
def test_shapes_and_expand(S, n, sample_shape):
    logits = _logits(n, (2, 3), S=S)
    ev = logits.shape[2:]
    d = Gibbs(S, logits, 0.5)
    assert isinstance(d, Distribution) and d.batch_shape == (2, 3) and d.event_shape == ev
    x = d.sample(sample_shape)
    assert x.shape == torch.Size(sample_shape) + (2, 3) + ev
    assert bool(d.support.check(x).all())
    assert d.log_prob(x).shape == torch.Size(sample_shape) + (2, 3)
    e = d.expand((5, 2, 3))
    assert type(e) is Gibbs and e.batch_shape == (5, 2, 3)
    assert e.sample(sample_shape).shape == torch.Size(sample_shape) + (5, 2, 3) + ev
    torch.testing.assert_close(e.entropy(), d.entropy().expand(5, 2, 3))
    xe = x.unsqueeze(-1 - len(ev) - 2)  # (*sample, 1, 2, 3, *event)
    torch.testing.assert_close(e.log_prob(xe), d.log_prob(x).unsqueeze(-3).expand(*sample_shape, 5, 2, 3))
    st = SoftmaxTrick(S, logits, 0.5).expand((4, 2, 3))
    assert st.batch_shape == (4, 2, 3) and st.rsample(sample_shape).shape == torch.Size(sample_shape) + (4, 2, 3) + ev


STRUCTURES = [(sst.Categorical(), 5), (sst.Binary(), 4), (sst.TopK(2), 5), (sst.CorrelatedTopK(2), 5),
              (sst.SpanningTree(), 4), (sst.Arborescence(), 4), (sst.Permutation(), 3)]


@pytest.mark.parametrize("S,n", STRUCTURES)
@pytest.mark.parametrize("hard", [False, True])
def test_softmax_trick_rsample_is_sst_sample(S, n, hard):
    theta = random_weights(S, (2,), n).requires_grad_()
    d = SoftmaxTrick(S, theta, 0.7, hard=hard)
    assert d.has_rsample and d.batch_shape == (2,) and d.event_shape == theta.shape[1:]
    x = d.rsample((3,), generator=torch.Generator().manual_seed(0))
    y = sst.sample(S, theta, 0.7, hard=hard, generator=torch.Generator().manual_seed(0), sample_shape=(3,))
    assert x.shape == (3, *theta.shape)
    torch.testing.assert_close(x, y, rtol=0, atol=0)
    up = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    (gx,) = torch.autograd.grad((x * up).sum(), theta)
    (gy,) = torch.autograd.grad((y * up).sum(), theta)
    torch.testing.assert_close(gx, gy, rtol=0, atol=0)
    s = d.sample((2,))
    assert s.shape == (2, *theta.shape) and not s.requires_grad
    with pytest.raises(NotImplementedError, match="no tractable density"):
        d.log_prob(s)


def test_softmax_trick_log_prob_points_to_torch():
    with pytest.raises(NotImplementedError, match="RelaxedOneHotCategorical"):
        SoftmaxTrick(sst.Categorical(), torch.zeros(4), 1.0).log_prob(torch.full((4,), 0.25))
    with pytest.raises(NotImplementedError, match="RelaxedBernoulli"):
        SoftmaxTrick(sst.Binary(), torch.zeros(4), 1.0).log_prob(torch.full((4,), 0.5))


def test_softmax_trick_tensor_temperature_is_differentiable():
    theta = _logits(5, (3,))
    tau = torch.tensor([0.5, 1.0, 2.0], dtype=F64, requires_grad=True)
    x = SoftmaxTrick(sst.Categorical(), theta, tau).rsample((2,), generator=torch.Generator().manual_seed(0))
    y = sst.sample(sst.Categorical(), theta, tau.detach().unsqueeze(-1), generator=torch.Generator().manual_seed(0),
                   sample_shape=(2,))
    torch.testing.assert_close(x.detach(), y, rtol=0, atol=1e-15)
    (g,) = torch.autograd.grad(x[..., 0].sum(), tau)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


class _Pair(sst.Structure):
    """A user's own structure (two one-hot items), which Gibbs does not know."""

    def _argmax(self, w):
        return torch.nn.functional.one_hot(w.argmax(-1), 2).to(w.dtype)

    def _relax(self, w, tau, regularizer):
        return torch.softmax(w / tau, -1)


def test_unsupported_structures_raise_clearly():
    with pytest.raises(NotImplementedError, match="permanent"):
        Gibbs(sst.Permutation(), torch.zeros(3, 3))
    with pytest.raises(NotImplementedError, match="not implemented yet"):
        Gibbs(_Pair(), torch.zeros(2))
    with pytest.raises(NotImplementedError, match="reparameterised"):
        Gibbs(sst.TopK(2), torch.zeros(4)).rsample()


@pytest.mark.parametrize("cls", [Gibbs, SoftmaxTrick])
def test_bad_arguments_raise_value_error_naming_them(cls):
    with pytest.raises(ValueError, match="structure"):
        cls(sst.TopK, torch.zeros(4))
    with pytest.raises(ValueError, match="logits"):
        cls(sst.TopK(2), [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="logits"):
        cls(sst.TopK(5), torch.zeros(4))
    with pytest.raises(ValueError, match="logits"):
        cls(sst.Categorical(), torch.tensor([0.0, float("nan")]))
    for bad in (0.0, -1.0, float("inf"), torch.tensor([1.0, -1.0]), "1"):
        with pytest.raises(ValueError, match="temperature"):
            cls(sst.Categorical(), torch.zeros(2, 3), bad)
    with pytest.raises(ValueError, match="temperature"):
        cls(sst.Categorical(), torch.zeros(2, 3), torch.ones(3))  # does not broadcast to batch (2,)


def test_softmax_trick_bad_regularizer_and_hard():
    with pytest.raises(ValueError, match="regularizer"):
        SoftmaxTrick(sst.TopK(2), torch.zeros(4), 1.0, regularizer="nope")
    with pytest.raises(ValueError, match="hard"):
        SoftmaxTrick(sst.TopK(2), torch.zeros(4), 1.0, hard=1)


def test_validate_args_rejects_non_vertices():
    arb = Gibbs(sst.Arborescence(), torch.zeros(3, 3), validate_args=True)
    two_cycle = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=torch.float32)  # 1 <-> 2, root 0 apart
    with pytest.raises(ValueError):
        arb.log_prob(two_cycle)
    chain = Gibbs(sst.CorrelatedTopK(2), torch.zeros(5), validate_args=True)
    with pytest.raises(ValueError):
        chain.log_prob(torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))  # the pair entry must be x0 * x1 = 1
    tree = Gibbs(sst.SpanningTree(), torch.zeros(4, 4), validate_args=True)
    cycle = torch.tensor([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float32)
    with pytest.raises(ValueError):
        tree.log_prob(cycle)  # three edges, not connected
    d = Gibbs(sst.TopK(2), torch.zeros(4), validate_args=True)
    assert isinstance(d.support, KHot) and d.support.k == 2
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([1.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError):
        Gibbs(sst.Categorical(), torch.zeros(3), validate_args=True).log_prob(torch.tensor([0.5, 0.5, 0.0]))


def test_kl_needs_one_structure():
    with pytest.raises(ValueError, match="one structure"):
        kl_divergence(Gibbs(sst.TopK(2), torch.zeros(4)), Gibbs(sst.TopK(1), torch.zeros(4)))


def test_loaded_on_first_use():
    import subprocess
    import sys

    code = ("import sys, sst\nbefore = 'sst.distributions' in sys.modules\n"
            "d = sst.distributions.Gibbs(sst.TopK(2), __import__('torch').zeros(4))\n"
            "print(before, type(d).__name__, 'distributions' in dir(sst))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "Gibbs", "True"]


# SoftmaxTrick.perturbation_log_prob (issue 53, item 1) -------------------------------------------------------------

PERTURBED = [(sst.Categorical(), 5), (sst.Binary(), 4), (sst.TopK(2), 5), (sst.CorrelatedTopK(2), 5),
             (sst.SpanningTree(), 4), (sst.Arborescence(), 4), (sst.Arborescence(root=-1), 4),
             (sst.Permutation(), 3)]


def _hand_density(S: sst.Structure, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gumbel(logits, 1) / Logistic(logits, 1) log-density of u by hand, summed over the free coordinates."""
    g = u - logits
    lp = -g - 2 * torch.log1p(torch.exp(-g)) if S.noise == "logistic" else -g - torch.exp(-g)
    if S.event_ndim == 1:
        return lp.sum(-1)
    n = lp.shape[-1]
    if isinstance(S, sst.SpanningTree):
        keep = torch.ones(n, n, dtype=torch.bool).triu(1)
    elif isinstance(S, sst.Arborescence):
        keep = ~torch.eye(n, dtype=torch.bool)
        keep[:, S.root % n] = False
    else:
        keep = torch.ones(n, n, dtype=torch.bool)
    return (lp * keep).sum((-1, -2))


@pytest.mark.parametrize("S,n", PERTURBED, ids=lambda v: repr(v) if isinstance(v, sst.Structure) else str(v))
def test_perturbation_log_prob_is_the_noise_density(S, n):
    logits = _logits(n, (2, 3), seed=3, S=S).double()
    d = SoftmaxTrick(S, logits, temperature=0.5)
    u = S.perturb(logits.expand(4, 2, 3, *logits.shape[2:]), generator=torch.Generator().manual_seed(1))
    got = d.perturbation_log_prob(u)
    assert got.shape == (4, 2, 3)
    torch.testing.assert_close(got, _hand_density(S, logits, u), rtol=1e-12, atol=1e-12)
    # unbatched u broadcasts against the batch
    assert d.perturbation_log_prob(u[0, 0, 0]).shape == (2, 3)


def test_perturbation_log_prob_matches_torch_gumbel_and_integrates_to_one():
    logits = torch.tensor([[0.3, -1.2, 2.0]], dtype=F64)
    u = torch.randn(7, 1, 3, dtype=F64)
    want = torch.distributions.Gumbel(logits, torch.ones_like(logits)).log_prob(u).sum(-1)
    torch.testing.assert_close(SoftmaxTrick(sst.Categorical(), logits).perturbation_log_prob(u), want)
    # Binary with one coordinate: the Logistic(logit, 1) density integrates to 1 (trapezoid on [-40, 40])
    grid = torch.linspace(-40, 40, 200001, dtype=F64)
    d = SoftmaxTrick(sst.Binary(), torch.tensor([0.7], dtype=F64))
    dens = d.perturbation_log_prob(grid.unsqueeze(-1)).exp()
    assert abs(torch.trapezoid(dens, grid).item() - 1.0) < 1e-8
    # Categorical with one coordinate: the Gumbel(logit, 1) density
    d = SoftmaxTrick(sst.Categorical(), torch.tensor([-0.4], dtype=F64))
    dens = d.perturbation_log_prob(grid.unsqueeze(-1)).exp()
    assert abs(torch.trapezoid(dens, grid).item() - 1.0) < 1e-8


@pytest.mark.parametrize("S,n", [(sst.TopK(2), 5), (sst.CorrelatedTopK(2), 5), (sst.SpanningTree(), 4),
                                 (sst.Arborescence(), 4)], ids=repr)
def test_perturbation_log_prob_gradient_is_reinforces(S, n):
    """REINFORCE with f = 1 and no baseline leaves the batch mean of d/dlogits log p(U) in logits.grad."""
    logits = _logits(n, (3,), seed=5, S=S).double().requires_grad_(True)
    out = sst.estimators.Reinforce()(S, logits, lambda x: torch.ones(x.shape[0], dtype=x.dtype),
                                     generator=torch.Generator().manual_seed(9))
    out.loss.backward()
    want = logits.grad.clone()
    logits.grad = None
    u = S.perturb(logits.detach(), generator=torch.Generator().manual_seed(9))
    SoftmaxTrick(S, logits, 2.0).perturbation_log_prob(u).mean().backward()
    torch.testing.assert_close(logits.grad, want, rtol=1e-12, atol=1e-12)


def test_perturbation_log_prob_bad_shape_and_no_noise():
    d = SoftmaxTrick(sst.TopK(2), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="u must be"):
        d.perturbation_log_prob(torch.zeros(3, 4))

    class Silent(sst.TopK):
        noise = None

    with pytest.raises(NotImplementedError, match="no known density"):
        SoftmaxTrick(Silent(2), torch.zeros(3, 5)).perturbation_log_prob(torch.zeros(3, 5))


def test_validate_args_follows_sst_checks():
    """validate_args=None validates unless sst.checks is off (whatever torch.distributions' global default, which
    importing torch._dynamo turns off); validate_args=False also skips the structure's own value checks; True
    checks even inside sst.checks(False)."""
    import torch._dynamo  # noqa: F401  (sets torch.distributions' default to False, as any torch.compile does)
    nan = torch.tensor([0.0, float("nan"), 1.0])
    for cls in (Gibbs, SoftmaxTrick):
        with pytest.raises(ValueError, match="logits"):
            cls(sst.Categorical(), nan)
        assert cls(sst.Categorical(), torch.zeros(3))._validate_args
        with sst.checks(False):
            d = cls(sst.Categorical(), nan)
            assert not d._validate_args
            with pytest.raises(ValueError, match="logits"):
                cls(sst.Categorical(), nan, validate_args=True)
        assert not cls(sst.Categorical(), nan, validate_args=False)._validate_args
    with pytest.raises(ValueError, match="temperature"):
        Gibbs(sst.Categorical(), torch.zeros(3), torch.tensor(-1.0))
    with sst.checks(False):  # a tensor temperature's values are not read (no host sync)
        Gibbs(sst.Categorical(), torch.zeros(3), torch.tensor(-1.0))
    with pytest.raises(ValueError, match="temperature"):
        Gibbs(sst.Categorical(), torch.zeros(3), -1.0)  # a number is always checked

