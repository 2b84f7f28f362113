"""The structures declare what the estimators need to know about them (issue 53, item 2): noise kind, exact
log-probability, perturbed coordinates. A subclass keeps its parent's facts; a user's own structure declares its
own and the score-function estimators serve it through the same interface."""

from __future__ import annotations

import pathlib

import pytest
import torch
from torch import Tensor

import sst
from sst import diagnostics as D
from sst import estimators as E

# the facts the estimators knew by class name before the structures declared them
BUILT_IN = {
    sst.Categorical: ("Categorical", 1, True, "gumbel", "all"),
    sst.Binary: ("Binary", 1, True, "logistic", "all"),
    sst.TopK: ("TopK", 1, False, "gumbel", "all"),
    sst.CorrelatedTopK: ("CorrelatedTopK", 1, False, "gumbel", "all"),
    sst.SpanningTree: ("SpanningTree", 2, False, "gumbel", "symmetric"),
    sst.Arborescence: ("Arborescence", 2, False, "gumbel", "arborescence"),
    sst.Permutation: ("Permutation", 2, False, "gumbel", "all"),
}


def _facts(info: E.StructureInfo) -> tuple:
    return info.kind, info.event_ndim, info.exact_log_prob, info.noise, info.coords


@pytest.mark.parametrize("cls", list(BUILT_IN), ids=lambda c: c.__name__)
def test_built_in_structures_declare_the_known_facts(cls):
    assert _facts(E.structure_info(cls)) == BUILT_IN[cls]
    assert (cls.kind, cls.noise, cls.perturbed_coordinates, cls.has_exact_law()) == (
        BUILT_IN[cls][0], BUILT_IN[cls][3], BUILT_IN[cls][4], BUILT_IN[cls][2])
    assert set(E.StructureInfo.known_kinds()) >= {facts[0] for facts in BUILT_IN.values()}


def test_subclasses_keep_their_parents_facts():
    class MyTopK(sst.TopK):
        pass

    class MyCategorical(sst.Categorical):
        pass

    class MyArborescence(sst.Arborescence):
        pass

    assert _facts(E.structure_info(MyTopK(2))) == BUILT_IN[sst.TopK]
    assert _facts(E.structure_info(MyCategorical)) == BUILT_IN[sst.Categorical]
    info = E.structure_info(MyArborescence(root=2))
    assert _facts(info) == BUILT_IN[sst.Arborescence] and info.root == 2
    assert E.supports("rebar", MyCategorical()) and not E.supports("rebar", MyTopK(2))
    assert D.enumerate_law(MyTopK(2), torch.zeros(4))[0].shape == (6, 4)  # the enumerations know it as TopK
    # the same estimate as the parent's from the same draws
    theta = torch.randn(4, 5)
    f = lambda z: (z * torch.arange(5.0)).sum(-1)  # noqa: E731
    grads = []
    for s in (sst.Categorical(), MyCategorical()):
        logits = theta.clone().requires_grad_(True)
        out = E.build("reinforce")(s, logits, f, generator=torch.Generator().manual_seed(0))
        grads.append(torch.autograd.grad(out.loss, logits)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


class OneOfTwo(sst.Structure):
    """A user's structure: pick one of two items, ``(..., 2)``, exact law softmax (declared, not inferred)."""

    kind = "OneOfTwo"
    regularizers = ("entropy",)
    event_ndim = 1

    def _argmax(self, w: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(w.argmax(-1), 2).to(w.dtype)

    def _relax(self, w: Tensor, tau, regularizer: str) -> Tensor:
        return torch.softmax(w / tau, -1)

    def enumerate(self, n: int, dtype=None, device=None) -> Tensor:
        return torch.eye(2, dtype=dtype or torch.get_default_dtype(), device=device)

    def exact_log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        return (x * torch.log_softmax(theta, -1)).sum(-1)

    def exact_mean(self, theta: Tensor) -> Tensor:
        return torch.softmax(theta, -1)


class OneOfTwoByDensity(OneOfTwo):
    """The same structure without its exact law: the estimators use the density of its Gumbel perturbation."""

    kind = "OneOfTwoByDensity"
    exact_log_prob = sst.Structure.exact_log_prob
    exact_mean = sst.Structure.exact_mean


C = torch.tensor([1.0, -0.5], dtype=torch.float64)


def _f(z: Tensor) -> Tensor:
    return (z * C).sum(-1) ** 2


@pytest.mark.parametrize("cls,exact", [(OneOfTwo, True), (OneOfTwoByDensity, False)])
@pytest.mark.parametrize("name", ["reinforce", "muprop"])
def test_user_structure_works_with_score_function_estimators(cls, exact, name):
    s = cls()
    info = E.structure_info(s)
    assert (info.kind, info.exact_log_prob, info.noise, info.coords) == (cls.kind, exact, "gumbel", "all")
    assert cls.kind in E.StructureInfo.known_kinds()
    assert E.supports(name, s) and not E.supports("rebar", s)
    theta = torch.tensor([0.4, -0.3], dtype=torch.float64)
    t = theta.clone().requires_grad_(True)  # exact gradient of E[f(X)] = sum_i softmax(theta)_i f(e_i)
    (exact_grad,) = torch.autograd.grad((torch.softmax(t, -1) * _f(torch.eye(2, dtype=t.dtype))).sum(), t)
    torch.manual_seed(3)
    est = E.build(name, event_shape=(2,))
    draws = D.gradient_draws(est, s, theta, _f, 20000, 1000)
    r = D.summarize(draws, exact_grad, 1000, D.batch_coupled(est))
    assert r["max_abs_z"] < 4.5, r
    assert r["cosine"] > 0.95, r


def test_undeclared_or_bad_facts():
    class Quiet(OneOfTwo):
        kind = None  # no kind of its own: known by its class's name
        noise = None  # and no known noise: no density
        exact_log_prob = sst.Structure.exact_log_prob

    assert E.structure_kind(Quiet()) == "Quiet"
    assert not E.supports("reinforce", Quiet()) and E.supports("relaxed", Quiet())
    with pytest.raises(ValueError, match="log-probability or a perturbation density"):
        E.build("reinforce")(Quiet(), torch.randn(2, 2), lambda z: z.sum(-1))

    class Loud(OneOfTwo):
        noise = "cauchy"

    with pytest.raises(ValueError, match="noise must be one of gumbel, logistic"):
        E.structure_info(Loud())

    class Odd(OneOfTwo):
        perturbed_coordinates = "diagonal"

    with pytest.raises(ValueError, match="perturbed_coordinates must be one of"):
        E.structure_info(Odd)


def test_no_recognition_by_class_name_remains():
    src = (pathlib.Path(sst.__file__).parent / "estimators" / "structinfo.py").read_text()
    assert "__mro__" not in src and "_KNOWN" not in src and "__name__ in" not in src
