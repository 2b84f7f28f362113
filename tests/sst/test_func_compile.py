"""Every structure under ``torch.func`` (vmap, grad) and ``torch.compile`` (fullgraph, dynamic shapes), with and
without numba: the transformed or compiled call gives eager mode's values and gradients.

Under a tracer the structures take their value-free paths (:func:`sst.validation.traced`): no value checks, the
PyTorch path instead of numba kernels, the exact elimination for every tree, opaque operators for the Hungarian,
Chu-Liu/Edmonds and Sinkhorn solvers (:mod:`sst.structures._opaque`). Tolerances: float32 results of float64
solves, where eager and traced paths differ by rounding (1e-7) or, for trees, by the one-inverse path's error
bound (1e-8): 1e-5 absolute on values in [0, 1] and gradients of size ~1.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.func import grad, vmap

import sst
from sst.structures import _backend

# (id, structure, event shape): every structure with its default arguments, and the released clip of the trees
CASES = [
    ("categorical", sst.Categorical(), (5,)),
    ("binary", sst.Binary(), (5,)),
    ("topk", sst.TopK(2), (6,)),
    ("correlated_topk", sst.CorrelatedTopK(2), (7,)),
    ("spanning_tree", sst.SpanningTree(), (5, 5)),
    ("spanning_tree_clip", sst.SpanningTree(max_range=15), (5, 5)),
    ("arborescence", sst.Arborescence(), (5, 5)),
    ("arborescence_clip", sst.Arborescence(max_range=15), (5, 5)),
    ("permutation", sst.Permutation(), (4, 4)),
]
IDS = [c[0] for c in CASES]
# (id, structure, regularizer, event shape): every regularizer of every structure, for the torch.func tests
REG_CASES = [(f"{cid}-{reg}", S, reg, ev) for cid, S, ev in CASES for reg in S.regularizers]


def _weights(S: sst.Structure, event: tuple[int, ...], batch: int, seed: int = 0) -> torch.Tensor:
    w = torch.randn(batch, *event, generator=torch.Generator().manual_seed(seed))
    return w + w.mT if isinstance(S, sst.SpanningTree) else w


def _probe(w: torch.Tensor) -> torch.Tensor:
    """Fixed, distinct weights of each output entry, so that a gradient sees every entry."""
    return torch.linspace(-1.0, 1.0, w[0].numel()).reshape(w.shape[1:])


# torch.func ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid, S, reg, event", REG_CASES, ids=[c[0] for c in REG_CASES])
def test_vmap_and_grad_match_eager(cid, S, reg, event, one_thread):
    w = _weights(S, event, 3).double()
    probe = _probe(w).double()
    out = vmap(lambda x: S.relax(x, 0.5, reg))(w)
    torch.testing.assert_close(out, S.relax(w, 0.5, reg), rtol=1e-9, atol=1e-10)
    g = vmap(grad(lambda x: (S.relax(x, 0.5, reg) * probe).sum()))(w)
    wr = w.clone().requires_grad_(True)
    (S.relax(wr, 0.5, reg) * probe).sum().backward()
    torch.testing.assert_close(g, wr.grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cid, S, event", CASES, ids=IDS)
def test_vmap_sample_draws_independent_vertices(cid, S, event, one_thread):
    w = _weights(S, event, 4)
    torch.manual_seed(0)
    hard = vmap(lambda x: sst.sample(S, x, 0.5, hard=True), randomness="different")(w)
    assert hard.shape == w.shape
    n = (event[0] + 1) // 2 if isinstance(S, sst.CorrelatedTopK) else event[-1]
    vertices = S.enumerate(n).flatten(1)
    assert (hard.flatten(1)[:, None, :] == vertices).all(-1).any(-1).all()  # each draw is a vertex
    g = vmap(grad(lambda x: (sst.sample(S, x, 0.5, hard=True) * _probe(w)).sum()), randomness="different")(w)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def _neg_inf_cases() -> list[tuple[sst.Structure, torch.Tensor]]:
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    w[:, 1] = float("-inf")  # never selected
    t = torch.randn(3, 5, 5, dtype=torch.float64, generator=gen)
    t = t + t.mT
    t[:, 0, 2] = t[:, 2, 0] = float("-inf")  # an absent edge
    a = torch.randn(3, 5, 5, dtype=torch.float64, generator=gen)
    a[:, 1, 3] = float("-inf")
    return [(sst.TopK(2), w), (sst.Categorical(), w), (sst.Binary(), w), (sst.SpanningTree(), t),
            (sst.Arborescence(), a)]


def test_vmap_and_grad_with_neg_inf_weights_match_eager(one_thread):
    """-inf weights (never selected, an absent edge) on the value-free paths: eager's values, finite gradients."""
    for S, w in _neg_inf_cases():
        probe = _probe(w).double()
        torch.testing.assert_close(vmap(lambda x, S=S: S.relax(x, 0.5))(w), S.relax(w, 0.5), rtol=1e-9, atol=1e-10)
        g = vmap(grad(lambda x, S=S, probe=probe: (S.relax(x, 0.5) * probe).sum()))(w)
        wr = w.clone().requires_grad_(True)
        (S.relax(wr, 0.5) * probe).sum().backward()
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, wr.grad, rtol=1e-7, atol=1e-9)


def test_checks_are_skipped_under_transforms():
    """A value check reads data, which vmap refuses; like torch.compile, a transformed call skips them (and a NaN
    input raises eagerly, not under vmap)."""
    seen = []
    vmap(lambda x: seen.append(sst.validation.checks_enabled()) or x)(torch.randn(3, 5))
    grad(lambda x: seen.append(sst.validation.checks_enabled()) or x.sum())(torch.randn(5))
    assert seen == [False, False] and sst.validation.checks_enabled()
    w = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(ValueError, match="w"):
        sst.Categorical().relax(w)
    assert vmap(sst.Categorical().relax)(w).isnan().any()


# torch.compile -----------------------------------------------------------------------------------------------

class _Model(torch.nn.Module):
    """A user's model: the structure an attribute (a constant to ``torch.compile``), a step on a straight-through
    sample (perturb, argmax in the forward pass, relax in the backward pass) and on ``relax`` itself."""

    def __init__(self, S: sst.Structure, probe: torch.Tensor) -> None:
        super().__init__()
        self.S = S
        self.register_buffer("probe", probe)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return (sst.sample(self.S, w, 0.5, hard=True) * self.probe).sum() + 0.5 * (self.S.relax(w, 2.0) ** 2).sum()


def _run(model: torch.nn.Module, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    wr = w.clone().requires_grad_(True)
    torch.manual_seed(1)
    loss = model(wr)
    loss.backward()
    return loss.detach(), wr.grad


# numba runs TopK's marginals and SpanningTree's argmax on the CPU: those two also as if numba were not installed
NUMBA_USERS = ("topk", "spanning_tree")
COMPILE_CASES = [(f"{cid}-{'numba' if numba else 'no_numba'}", S, event, numba)
                 for cid, S, event in CASES for numba in ((True, False) if cid in NUMBA_USERS else (True,))]
# compiling the exact tree paths and the chain (their backward passes) takes 15-50 s each: in the slow run
SLOW_COMPILES = ("spanning_tree-", "arborescence-", "correlated_topk-")


@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("cid, S, event, numba", [
    pytest.param(*c, marks=pytest.mark.slow) if c[0].startswith(SLOW_COMPILES) else c for c in COMPILE_CASES],
    ids=[c[0] for c in COMPILE_CASES])
def test_compile_fullgraph_dynamic_matches_eager(cid, S, event, numba, monkeypatch, one_thread):
    """``torch.compile(fullgraph=True, dynamic=True)`` of a step on a straight-through sample: eager's loss and
    gradient (the same noise: ``fallback_random``), then two other batch sizes without a recompile."""
    if numba and _backend.numba_kernels() is None:
        pytest.skip("numba is not installed")
    if not numba:
        monkeypatch.setattr(_backend, "numba_kernels", lambda: None)
    torch._dynamo.reset()
    w = _weights(S, event, 3)
    model = _Model(S, _probe(w))
    compiled = torch.compile(model, fullgraph=True, dynamic=True, options={"fallback_random": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Inductor's notes on the CPU backend
        loss_c, grad_c = _run(compiled, w)
    loss_e, grad_e = _run(model, w)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_c, grad_e, rtol=1e-4, atol=1e-5)
    with torch.compiler.set_stance("fail_on_recompile"):  # a new batch size reuses the graph
        for batch in (5, 8):
            loss, g = _run(compiled, _weights(S, event, batch, seed=batch))
            assert torch.isfinite(loss) and torch.isfinite(g).all()


def test_traced_sinkhorn_function_gradcheck():
    """The traced Sinkhorn (the opaque operator's plan, the implicit gradient) in float64, outside and inside vmap."""
    from sst.structures._sinkhorn import _SinkhornTraced

    s = torch.randn(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: _SinkhornTraced.apply(x, 1e-12, 200), (s,))
    assert torch.autograd.gradgradcheck(lambda x: _SinkhornTraced.apply(x, 1e-12, 200), (s,))
    p = vmap(lambda x: _SinkhornTraced.apply(x, 1e-12, 200))(s.detach())
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(p.sum(-2), torch.ones(2, 3, dtype=torch.float64), rtol=0, atol=1e-10)


def _step(S: sst.Structure, w: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    return (sst.sample(S, w, 0.5, hard=True) * probe).sum()


ARGUMENT_CASES = [c for c in CASES if c[0] in ("topk", "correlated_topk", "arborescence_clip")]


@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("cid, S, event", [
    pytest.param(*c, marks=pytest.mark.slow) if c[0] == "correlated_topk" else c for c in ARGUMENT_CASES],
    ids=[c[0] for c in ARGUMENT_CASES])
def test_compile_structure_as_argument(cid, S, event, one_thread):
    """A structure passed to a function compiled with dynamic=True: its ints (k, root) become constants of the
    graph (sst.validation.static_int); traced as symbols, torch 2.13 gave TopK NaN or 1e23 gradients on a cold
    Inductor cache (so the FX graph cache is off here). Another k recompiles, with the right numbers."""
    torch._dynamo.reset()
    w = _weights(S, event, 3)
    compiled = torch.compile(_step, fullgraph=True, dynamic=True, options={"fallback_random": True})

    def both(S: sst.Structure) -> None:
        results = []
        for fn in (compiled, _step):
            wr = w.clone().requires_grad_(True)
            torch.manual_seed(1)
            loss = fn(S, wr, _probe(w))
            loss.backward()
            results.append((loss.detach(), wr.grad))
        (loss_c, grad_c), (loss_e, grad_e) = results
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad_c, grad_e, rtol=1e-4, atol=1e-5)

    with torch._inductor.config.patch(fx_graph_cache=False), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        both(S)
        if isinstance(S, sst.TopK):
            both(sst.TopK(3))


def test_static_int_keeps_the_value_and_its_sign():
    """sst.validation.static_int: the value unchanged, eagerly and compiled with dynamic=True (negative roots too)."""
    from sst.validation import static_int

    class Holder:
        def __init__(self, v: int) -> None:
            self.v = v

    torch._dynamo.reset()
    f = torch.compile(lambda h, x: x * static_int(h.v), fullgraph=True, dynamic=True)
    for v in (-3, -1, 0, 2, 5):
        assert static_int(v) == v
        assert f(Holder(v), torch.ones(2)).tolist() == [float(v)] * 2
