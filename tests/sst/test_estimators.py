"""sst.estimators: one interface, unbiasedness against exact enumeration, variance, plumbing."""

from __future__ import annotations

import itertools

import pytest
import torch

import sst
import sst.estimators as E
from sst import diagnostics as D

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: extra threads only add contention

UNBIASED = [
    ("reinforce", {"baseline": "none"}),
    ("reinforce", {"baseline": "ema"}),
    ("reinforce", {"baseline": "batch"}),
    ("reinforce", {"baseline": "loo", "num_samples": 2}),
    ("nvil", {"normalize": False}),
    ("muprop", {}),
    ("muprop", {"baseline": "batch"}),
    ("muprop", {"baseline": "loo", "num_samples": 2}),
    ("rebar", {"tau": 0.5}),
    ("relax", {"tau": 0.5}),
]
ALL = [(n, {}) for n in ("relaxed", "straight_through")] + UNBIASED


def quadratic(target: torch.Tensor):
    return lambda x: ((x - target) ** 2).reshape(x.shape[0], -1).sum(-1)


def problem(kind: str, seed: int = 0):
    """(structure, theta (n,), f) of a small toy problem."""
    g = torch.Generator().manual_seed(seed)
    if kind == "categorical":
        return sst.Categorical(), torch.randn(6, generator=g), quadratic(torch.rand(6, generator=g))
    if kind == "binary":
        return sst.Binary(), 0.7 * torch.randn(6, generator=g), quadratic(torch.full((6,), 0.45))
    if kind == "topk":
        return sst.TopK(2), torch.randn(6, generator=g), quadratic(torch.rand(6, generator=g))
    raise ValueError(kind)


def build(name, opts, theta_shape):
    return E.build(name, event_shape=tuple(theta_shape), **opts)


def _id(p):
    name, opts = p
    return name + "".join(f"-{v}" for v in opts.values())


# --- unbiasedness --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["categorical", "binary"])
@pytest.mark.parametrize("cfg", UNBIASED, ids=_id)
def test_unbiased_against_exact_gradient(kind, cfg):
    torch.manual_seed(1)
    s, theta, f = problem(kind)
    est = build(*cfg, theta.shape)
    _, exact = D.exact_gradient(s, theta, f)
    r = D.bias_variance(est, s, theta, f, num_draws=20000, batch_size=1000, exact=exact)
    assert r["max_abs_z"] < 4.5, r
    assert r["cosine"] > 0.95


@pytest.mark.parametrize("cfg", [c for c in UNBIASED if c[0] in ("reinforce", "nvil", "muprop")], ids=_id)
def test_unbiased_topk_perturbation_density(cfg):
    torch.manual_seed(2)
    s, theta, f = problem("topk")
    est = build(*cfg, theta.shape)
    _, exact = D.exact_gradient(s, theta, f)
    r = D.bias_variance(est, s, theta, f, num_draws=20000, batch_size=1000, exact=exact)
    assert r["max_abs_z"] < 4.5, r


def _joint_categorical_gradient(theta: torch.Tensor, f):
    """Exact gradient for independent categoricals theta (m, n) by enumerating n^m joint outcomes."""
    m, n = theta.shape
    theta = theta.detach().requires_grad_(True)
    eye = torch.eye(n)
    xs = torch.stack([eye[list(c)] for c in itertools.product(range(n), repeat=m)])  # (n^m, m, n)
    logp = (xs * torch.log_softmax(theta, -1)).sum((-2, -1))
    return torch.autograd.grad((logp.exp() * f(xs)).sum(), theta)[0]


@pytest.mark.parametrize("name", ["reinforce", "rebar", "relax", "muprop"])
def test_independent_copies_in_middle_dims(name):
    """Categorical on logits (B, 3, 4): three independent 4-way variables; log-probs sum over them."""
    torch.manual_seed(3)
    theta = torch.randn(3, 4)
    w = torch.randn(3, 4)
    f = lambda x: ((x * w).sum((-2, -1)) - 0.5) ** 2  # noqa: E731  couples the variables
    exact = _joint_categorical_gradient(theta, f)
    est = E.build(name, tau=0.5, event_shape=(3, 4))
    draws = D.gradient_draws(est, sst.Categorical(), theta, f, num_draws=20000, batch_size=1000)
    r = D.summarize(draws, exact)
    assert r["max_abs_z"] < 4.5, r


# --- variance --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["categorical", "binary"])
@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_rebar_relax_lower_variance_than_reinforce(kind, name):
    torch.manual_seed(4)
    s, theta, f = problem(kind)
    _, exact = D.exact_gradient(s, theta, f)
    plain = D.bias_variance(E.build("reinforce"), s, theta, f, 5000, 1000, exact=exact)
    cv = D.bias_variance(build(name, {"tau": 0.5}, theta.shape), s, theta, f, 5000, 1000, exact=exact)
    assert cv["variance"] < 0.5 * plain["variance"], (cv["variance"], plain["variance"])


def test_muprop_batch_baseline_lowers_variance():
    """On Tucker et al.'s binary problem (f flat around the mean) the Taylor term leaves a large constant
    residual; the batch baseline removes it."""
    torch.manual_seed(6)
    s, theta, f = sst.Binary(), torch.zeros(20), quadratic(torch.full((20,), 0.45))
    _, exact = D.exact_gradient(s, theta, f)
    plain = D.bias_variance(E.build("muprop"), s, theta, f, 5000, 1000, exact=exact)
    centred = D.bias_variance(E.build("muprop", baseline="batch"), s, theta, f, 5000, 1000, exact=exact)
    assert centred["variance"] < 0.1 * plain["variance"], (centred["variance"], plain["variance"])


def test_rebar_tuning_reduces_variance():
    torch.manual_seed(5)
    s, theta, f = problem("binary")
    _, exact = D.exact_gradient(s, theta, f)
    est = E.build("rebar", tau=0.5)
    before = D.bias_variance(est, s, theta, f, 5000, 1000, exact=exact)["variance"]
    D.tune(est, s, theta, f, steps=100, batch_size=100, lr=3e-2)
    after = D.bias_variance(est, s, theta, f, 5000, 1000, exact=exact)
    assert after["variance"] < before
    assert after["max_abs_z"] < 4.5


# --- relaxed / straight-through ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["categorical", "binary", "topk"])
@pytest.mark.parametrize("name", ["relaxed", "straight_through"])
@pytest.mark.parametrize("tau", [0.01, 1.0, 100.0])
def test_relaxed_finite(kind, name, tau):
    torch.manual_seed(6)
    s, theta, f = problem(kind)
    logits = (5 * theta).expand(64, -1).clone().requires_grad_(True)
    out = E.build(name, tau=tau)(s, logits, f)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("kind", ["categorical", "binary"])
def test_relaxed_small_tau_matches_exact_sign(kind):
    """A linear objective: at small tau the relaxed gradient's mean has the exact gradient's signs."""
    torch.manual_seed(7)
    s, theta, _ = problem(kind)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])
    f = lambda x: x @ c  # noqa: E731
    _, exact = D.exact_gradient(s, theta, f)
    r = D.bias_variance(E.build("relaxed", tau=0.1), s, theta, f, 20000, 1000, exact=exact)
    big = exact.abs() > 0.05 * exact.abs().max()
    assert (r["mean"].sign() == exact.double().sign())[big].all(), (r["mean"], exact)
    assert r["cosine"] > 0.9


# --- interface ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", ALL, ids=_id)
def test_interface_shapes_f_calls_and_loss_value(cfg):
    name, opts = cfg
    torch.manual_seed(8)
    s = sst.Categorical()
    b, event = 5, (3, 4)
    logits = torch.randn(b, *event, requires_grad=True)
    data = torch.randn(b)
    calls = []

    def f(z):
        calls.append(z.shape[0])
        assert z.shape[0] % b == 0 and z.shape[1:] == event
        return ((z.reshape(z.shape[0], -1) - 0.3) ** 2).sum(-1) + E.tile(data, z.shape[0])

    est = E.build(name, event_shape=event, context_dim=7, **{"tau": 0.7, **opts})
    out = est(s, logits, f, context=torch.randn(b, 7))
    k = est.num_samples
    # one call on the samples; MuProp (expansion points), REBAR and RELAX (two relaxed points) one more
    extra = {"muprop": [k * b], "rebar": [2 * k * b], "relax": [2 * k * b]}.get(name, [])
    assert calls == [k * b, *extra]
    assert out.x.shape == ((b, *event) if k == 1 else (k, b, *event))
    assert out.value.shape == ((b,) if k == 1 else (k, b))
    assert not out.value.requires_grad
    assert torch.allclose(out.loss.detach(), out.value.mean(), atol=1e-5)
    out.loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("cfg", ALL, ids=_id)
def test_num_samples_layout_is_sample_major(cfg):
    name, opts = cfg
    opts = {**opts, "num_samples": 3}
    b = 4
    logits = torch.randn(b, 5, requires_grad=True)
    item = torch.arange(b, dtype=torch.float32)
    seen = {}

    def f(z):
        seen["rows"] = z.shape[0]
        return z.sum(-1) * 0 + E.tile(item, z.shape[0])  # value = item index

    out = E.build(name, event_shape=(5,), **opts)(sst.Categorical(), logits, f)
    assert seen["rows"] % (3 * b) == 0
    assert out.value.shape == (3, b)
    assert torch.equal(out.value, item.expand(3, b))


@pytest.mark.parametrize("cfg", ALL, ids=_id)
def test_objective_parameters_get_gradient_of_forward_samples(cfg):
    """The parameters f closes over receive grad mean f(x) at the forward samples, nothing else."""
    name, opts = cfg
    torch.manual_seed(9)
    w = torch.randn(6, requires_grad=True)
    f = lambda x: ((x - 0.2) ** 2 * w).sum(-1) + (w**2).sum()  # noqa: E731
    logits = torch.randn(8, 6, requires_grad=True)
    out = E.build(name, event_shape=(6,), **{"tau": 0.5, **opts})(sst.Binary(), logits, f)
    out.loss.backward()
    x = out.x.reshape(-1, 6).detach()
    w2 = w.detach().clone().requires_grad_(True)
    ((((x - 0.2) ** 2 * w2).sum(-1) + (w2**2).sum()).mean()).backward()
    if name in ("relaxed", "straight_through"):
        assert torch.isfinite(w.grad).all()
    else:
        torch.testing.assert_close(w.grad, w2.grad)


@pytest.mark.parametrize("name", ["nvil", "rebar", "relax"])
def test_own_parameters_get_gradients(name):
    torch.manual_seed(10)
    s, theta, f = problem("binary")
    est = E.build(name, tau=0.5, event_shape=(6,), context_dim=3)
    logits = theta.expand(32, -1).clone().requires_grad_(True)
    out = est(s, logits, f, context=torch.randn(32, 3))
    out.loss.backward()
    grads = [p.grad for p in est.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_estimator_params_do_not_change_logits_gradient():
    """REBAR's injected variance terms reach only its own parameters."""
    torch.manual_seed(11)
    s, theta, f = problem("categorical")
    est = E.build("rebar", tau=0.5)
    logits = theta.expand(16, -1).clone().requires_grad_(True)
    torch.manual_seed(0)
    out = est(s, logits, f)
    (g1,) = torch.autograd.grad(out.loss, logits)
    est.eval()
    logits2 = theta.expand(16, -1).clone().requires_grad_(True)
    torch.manual_seed(0)
    out2 = est(s, logits2, f)
    (g2,) = torch.autograd.grad(out2.loss, logits2)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("cfg", ALL, ids=_id)
def test_no_grad_and_eval_mode(cfg):
    name, opts = cfg
    est = E.build(name, event_shape=(6,), **opts).eval()
    s, theta, f = problem("categorical")
    before = {k: v.clone() for k, v in est.state_dict().items()}
    with torch.no_grad():
        out = est(s, theta.expand(4, -1), f)
    assert torch.isfinite(out.loss)
    for k, v in est.state_dict().items():
        assert torch.equal(v, before[k]), k  # no running statistics updated in eval mode


def test_tau_is_settable_and_validated():
    est = E.build("relaxed", tau=1.0)
    est.tau = 0.25
    assert est.tau == 0.25
    with pytest.raises(ValueError, match="tau"):
        est.tau = 0.0
    rebar = E.build("rebar", tau=2.0)
    with torch.no_grad():
        rebar.log_tau_scale.fill_(0.5)
    rebar.tau = 1.0
    assert torch.isclose(rebar.temperature(), torch.exp(torch.tensor(0.5)))


def test_build_options():
    for name in E.ESTIMATORS:
        est = E.build(name, tau=0.5, regularizer=None, event_shape=[6], context_dim=4, structures=None)
        assert isinstance(est, torch.nn.Module)
    with pytest.raises(ValueError, match="unknown estimator"):
        E.build("reinforcee")
    with pytest.raises(ValueError, match="unknown estimator option"):
        E.build("reinforce", baselin="ema")
    with pytest.raises(ValueError, match="baseline"):
        E.build("reinforce", baseline="mean")
    with pytest.raises(ValueError, match="num_samples"):
        E.build("reinforce", baseline="loo", num_samples=1)
    with pytest.raises(ValueError, match="event_shape"):
        E.build("relax")


def test_event_shape_and_f_shape_are_checked():
    est = E.build("reinforce", event_shape=(6,))
    with pytest.raises(ValueError, match="event_shape"):
        est(sst.Categorical(), torch.randn(3, 5), lambda z: z.sum(-1))
    with pytest.raises(ValueError, match="sample-major"):
        E.build("reinforce")(sst.Categorical(), torch.randn(3, 5), lambda z: z)


def test_nvil_context_checks():
    with pytest.raises(ValueError, match="context"):
        E.build("nvil", context_dim=4)(sst.Binary(), torch.randn(3, 5), lambda z: z.sum(-1))
    with pytest.raises(ValueError, match="context"):
        E.build("nvil")(sst.Binary(), torch.randn(3, 5), lambda z: z.sum(-1), context=torch.randn(3, 4))


def test_nvil_baseline_is_what_the_signal_subtracts():
    torch.manual_seed(3)
    est = E.build("nvil", context_dim=4, normalize=False)
    ctx, logits = torch.randn(6, 4), torch.randn(6, 5, requires_grad=True)
    f = lambda z: 3.0 + z.sum(-1)  # noqa: E731
    for _ in range(3):  # running mean away from 0
        est(sst.Binary(), logits, f, context=ctx)
    est.eval()
    out = est(sst.Binary(), logits, f, context=ctx)
    b = est.learned_baseline(ctx, 6, out.value)
    assert b.shape == (6,) and not b.requires_grad
    torch.testing.assert_close(out.stats["baseline_mse"], ((out.value.detach() - b) ** 2).mean())


def test_nvil_normalisation_is_a_positive_rescaling():
    torch.manual_seed(12)
    s, theta, f = problem("binary")
    big = lambda x: 100 * f(x)  # noqa: E731
    est = E.build("nvil", normalize=True)
    D.tune(est, s, theta, big, steps=20, batch_size=200)  # running variance >> 1
    _, exact = D.exact_gradient(s, theta, big)
    r = D.bias_variance(est.eval(), s, theta, big, 10000, 1000, exact=exact)
    assert r["cosine"] > 0.95
    assert r["mean"].norm() < exact.norm()  # scaled down by max(1, running std)


# --- unsupported structures ----------------------------------------------------------------------------
def test_unsupported_structure_raises_naming_supported():
    topk = sst.TopK(2)
    for name in ("rebar", "relax"):
        assert not E.supports(name, topk)
        assert not E.supports(name, sst.TopK)
        assert E.supports(name, sst.Categorical())
        assert E.supports(name, sst.Binary)
        with pytest.raises(ValueError, match="Categorical, Binary"):
            E.check_supported(name, topk)
        with pytest.raises(ValueError, match="Categorical, Binary"):
            E.build(name, event_shape=(6,))(topk, torch.randn(2, 6), lambda z: z.sum(-1))
    for name in ("relaxed", "straight_through", "reinforce", "nvil", "muprop"):
        assert E.supports(name, topk)
    assert E.supported_structures("rebar") == ("Categorical", "Binary")


@pytest.mark.skipif(not hasattr(sst, "SpanningTree"), reason="sst.SpanningTree not available yet")
def test_spanning_tree_support_and_score_function_runs():
    s = sst.SpanningTree()
    with pytest.raises(ValueError, match="Categorical, Binary"):
        E.build("rebar")(s, torch.randn(2, 4, 4), lambda z: z.sum((-2, -1)))
    a = torch.randn(8, 5, 5)
    logits = (a + a.transpose(-1, -2)).requires_grad_(True)
    for name in ("reinforce", "nvil", "muprop", "relaxed", "straight_through"):
        out = E.build(name, tau=1.0)(s, logits, lambda z: (z * torch.arange(25.0).view(5, 5)).sum((-2, -1)))
        (g,) = torch.autograd.grad(out.loss, logits)
        assert torch.isfinite(g).all()
        if name in ("reinforce", "nvil", "muprop"):
            torch.testing.assert_close(g, g.transpose(-1, -2))  # symmetric split of each edge's score
            assert (g.diagonal(dim1=-2, dim2=-1) == 0).all()


def test_unknown_structure_is_rejected_by_score_estimators():
    class Mystery:
        def perturb(self, theta, generator=None):
            return theta

        def argmax(self, w):
            return w

    assert not E.supports("reinforce", Mystery())
    with pytest.raises(ValueError, match="Categorical"):
        E.build("reinforce")(Mystery(), torch.randn(2, 3), lambda z: z.sum(-1))


# --- conditional samples (REBAR / RELAX) ----------------------------------------------------------------
def test_conditional_samples_gradcheck():
    torch.manual_seed(13)
    theta = torch.randn(3, 5, dtype=torch.float64)
    b = torch.nn.functional.one_hot(torch.tensor([0, 2, 4]), 5).double()
    v = torch.rand(3, 5, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    fn = lambda t: E.categorical_conditional(torch.log_softmax(t, -1), b, v)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (theta.requires_grad_(True),))
    bb = (torch.rand(3, 5) > 0.5).double()
    assert torch.autograd.gradcheck(lambda t: E.binary_conditional(t, bb, v), (theta,))


def test_conditional_samples_have_the_right_law():
    """b ~ p, z~ | b has the law of the unconditional perturbation z, and argmax z~ = b."""
    torch.manual_seed(14)
    from scipy import stats

    n, m = 4, 40000
    theta = torch.log_softmax(torch.tensor([0.5, -1.0, 0.0, 1.2]), -1)
    v0, v1 = torch.rand(m, n).clamp(1e-7, 1 - 1e-7), torch.rand(m, n).clamp(1e-7, 1 - 1e-7)
    z = theta - torch.log(-torch.log(v0))
    b = torch.nn.functional.one_hot(z.argmax(-1), n).float()
    zt = E.categorical_conditional(theta, b, v1)
    assert torch.equal(zt.argmax(-1), b.argmax(-1))
    z_fresh = theta - torch.log(-torch.log(torch.rand(m, n).clamp(1e-7, 1 - 1e-7)))
    for i in range(n):
        assert stats.ks_2samp(zt[:, i].numpy(), z_fresh[:, i].numpy()).pvalue > 1e-3

    logit = torch.tensor([0.3, -2.0, 1.5])
    zb = logit + torch.log(v0[:, :3]) - torch.log1p(-v0[:, :3])
    bb = (zb > 0).float()
    ztb = E.binary_conditional(logit, bb, v1[:, :3])
    assert torch.equal(ztb > 0, bb > 0)
    u = torch.rand(m, 3).clamp(1e-7, 1 - 1e-7)
    fresh = logit + torch.log(u) - torch.log1p(-u)
    for i in range(3):
        assert stats.ks_2samp(ztb[:, i].numpy(), fresh[:, i].numpy()).pvalue > 1e-3


def test_perturbation_density_symmetric_convention():
    info = E.StructureInfo("SpanningTree", 2, False, "gumbel", "symmetric")
    a = torch.randn(2, 4, 4, dtype=torch.float64)
    theta = (a + a.transpose(-1, -2)).requires_grad_(True)
    g = torch.randn(2, 4, 4, dtype=torch.float64)
    u = theta.detach() + (g + g.transpose(-1, -2)) / 2
    lp = info.perturbation_log_density(theta, u)
    iu = torch.triu_indices(4, 4, 1)
    d = (u - theta)[:, iu[0], iu[1]]
    torch.testing.assert_close(lp, (-(d + torch.exp(-d))).sum(-1))
    (grad,) = torch.autograd.grad(lp.sum(), theta)
    torch.testing.assert_close(grad, grad.transpose(-1, -2))


@pytest.mark.parametrize("name", ["reinforce", "nvil", "muprop", "rebar", "relax"])
def test_gradient_flows_through_an_encoder(name):
    """With logits = encoder(data), the encoder gets J^T (logits gradient), as with a leaf."""
    torch.manual_seed(15)
    enc = torch.nn.Linear(3, 12)
    data = torch.randn(8, 3)
    f = lambda z: ((z - 0.3) ** 2).reshape(z.shape[0], -1).sum(-1)  # noqa: E731
    est = E.build(name, tau=0.5, event_shape=(3, 4), context_dim=3).eval()
    torch.manual_seed(0)
    est(sst.Categorical(), enc(data).view(8, 3, 4), f, context=data).loss.backward()
    g_enc = enc.weight.grad.clone()
    enc.zero_grad()
    leaf = enc(data).view(8, 3, 4).detach().requires_grad_(True)
    torch.manual_seed(0)
    (g,) = torch.autograd.grad(est(sst.Categorical(), leaf, f, context=data).loss, leaf)
    enc(data).view(8, 3, 4).backward(g)
    torch.testing.assert_close(g_enc, enc.weight.grad)


def _triangle_tree_law(theta_e: torch.Tensor) -> torch.Tensor:
    """P(the maximum spanning tree of a perturbed triangle drops edge e) = P(edge e has the smallest
    perturbed weight), by quadrature of the Gumbel densities; differentiable in the 3 edge weights."""
    u = torch.linspace(-12.0, 40.0, 40001, dtype=torch.float64)[:, None]
    z = u - theta_e
    pdf, cdf = torch.exp(-z - torch.exp(-z)), torch.exp(-torch.exp(-z))
    surv = 1 - cdf
    integrand = torch.stack([pdf[:, e] * surv[:, [j for j in range(3) if j != e]].prod(-1) for e in range(3)], -1)
    return torch.trapezoid(integrand, u[:, 0], dim=0)


@pytest.mark.parametrize("name", ["reinforce", "nvil", "muprop"])
def test_spanning_tree_score_function_unbiased_on_a_triangle(name):
    """Gumbel-perturbed spanning trees of a triangle: the per-edge gradient (sum of the two symmetric entries)
    matches the exact gradient from the law of the dropped edge."""
    torch.manual_seed(16)
    edges = [(0, 1), (0, 2), (1, 2)]
    theta_e = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64)
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    # f(tree) = sum of c over its edges (+ a coupling), tree = all edges but the dropped one
    value_if_dropped = torch.stack([c.sum() - c[e] + 0.7 * (e == 0) for e in range(3)])
    exact = torch.autograd.grad((_triangle_tree_law(theta_e.requires_grad_(True)) * value_if_dropped).sum(),
                                theta_e)[0]
    iu = torch.tensor(edges).T

    def f(x):
        xe = x[:, iu[0], iu[1]].double()
        return (xe @ c + 0.7 * (1 - xe[:, 0])).to(x.dtype)

    theta = torch.zeros(3, 3, dtype=torch.float64)
    theta[iu[0], iu[1]] = theta_e.detach()
    theta = theta + theta.T
    est = E.build(name, tau=1.0, **({"normalize": False} if name == "nvil" else {}))
    draws = D.gradient_draws(est, sst.SpanningTree(), theta, f, num_draws=20000, batch_size=1000)
    per_edge = draws[:, iu[0], iu[1]] + draws[:, iu[1], iu[0]]
    r = D.summarize(per_edge, exact)
    assert r["max_abs_z"] < 4.5, (r["mean"], exact)


@pytest.mark.parametrize("make", [lambda: sst.Arborescence(root=0), lambda: sst.Permutation(),
                                  lambda: sst.CorrelatedTopK(2)], ids=["arborescence", "permutation", "corr_topk"])
@pytest.mark.parametrize("name", ["relaxed", "straight_through", "reinforce", "nvil", "muprop"])
def test_other_structures_run(make, name):
    s = make()
    shape = (5,) if isinstance(s, sst.CorrelatedTopK) else (4, 4)
    logits = torch.randn(6, *shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*shape, dtype=torch.float64)
    out = E.build(name, tau=1.0)(s, logits, lambda z: (z * w).reshape(z.shape[0], -1).sum(-1))
    (g,) = torch.autograd.grad(out.loss, logits)
    assert torch.isfinite(g).all()
    if isinstance(s, sst.Arborescence) and name in ("reinforce", "nvil"):
        assert (g.diagonal(dim1=-2, dim2=-1) == 0).all() and (g[..., 0] == 0).all()  # never-chosen entries
