"""What the estimators need to know about a structure: its log-probability or its perturbation density.

Categorical and Binary samples have exact, cheap log-probabilities. For the other structures the law of
``X = argmax <U, x>`` is intractable, so score-function estimators use the density of the perturbation
``U = theta + noise`` instead (as the SST paper's NRI code does): ``E_U[f(argmax U) d/dtheta log p(U; theta)]``
is the exact gradient of ``E[f(X)]``, only with more variance.

The facts are the structure's own (:class:`sst.Structure`): ``kind``, ``noise``, ``perturbed_coordinates``,
``event_ndim`` and, where the law is tractable, ``exact_log_prob`` / ``exact_mean``. A subclass of ``sst.TopK``
inherits TopK's; a user's own structure declares its own and every score-function estimator serves it. This
module only reads them (:func:`structure_info`) and turns them into the densities the estimators differentiate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sst.structures.base import NOISE_KINDS, PERTURBED_COORDINATES, Structure

EULER_GAMMA = 0.5772156649015329


def _flat_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(-1)


def _structure_classes() -> list[type[Structure]]:
    """Every subclass of :class:`sst.Structure` defined so far, parents before children, in definition order."""
    out: list[type[Structure]] = []
    todo = list(Structure.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in out:
            out.append(cls)
            todo.extend(cls.__subclasses__())
    return out


@dataclass(frozen=True)
class StructureInfo:
    """Score-function facts about one structure, as it declares them (see :class:`sst.Structure`).

    ``exact_log_prob``: whether the structure has an exact law (it overrides ``Structure.exact_log_prob``);
    ``noise``: the law of its perturbation's noise (None: unknown); ``coords``: its ``perturbed_coordinates``;
    ``structure``: the structure (instance or class) the exact law is read from.
    """

    kind: str
    event_ndim: int
    exact_log_prob: bool
    noise: str | None
    coords: str
    root: int = 0
    structure: Any = field(default=None, compare=False, repr=False)

    @staticmethod
    def known_kinds() -> tuple[str, ...]:
        """The kinds of the structures defined so far (sst's and users' subclasses of :class:`sst.Structure`)
        that the score-function estimators can serve: an exact law or a known noise."""
        kinds = (c.kind or c.__name__ for c in _structure_classes() if c.has_exact_law() or c.noise is not None)
        return tuple(dict.fromkeys(kinds))

    # exact law (Categorical, Binary) -------------------------------------------------------------------
    def _law(self) -> Any:
        if not self.exact_log_prob:
            raise ValueError(f"{self.kind} has no tractable log-probability; use the perturbation density")
        if isinstance(self.structure, type):
            raise ValueError(f"the exact law of {self.kind} needs a structure instance, got the class")
        return self.structure

    def log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact ``log p(x; theta)`` per row, ``(N, *event) -> (N,)`` (the structure's ``exact_log_prob``)."""
        lp = self._law().exact_log_prob(theta, x)
        return _flat_sum(lp) if lp.dim() > 1 else lp

    def mean(self, theta: Tensor) -> Tensor:
        """``E[X]`` under the exact law (the structure's ``exact_mean``: Categorical softmax, Binary sigmoid)."""
        if not self.exact_log_prob:
            raise ValueError(f"E[X] is not tractable for {self.kind}")
        return self._law().exact_mean(theta)

    # perturbation density ----------------------------------------------------------------------------
    def _mask(self, like: Tensor) -> Tensor | None:
        """Weights of each entry in the density: None (all 1); symmetric: 1/2 off the diagonal, 0 on it;
        arborescence: 1 on the edges i -> j, i != j, j != root, else 0."""
        if self.coords == "all":
            return None
        n = like.shape[-1]
        off = 1.0 - torch.eye(n, dtype=like.dtype, device=like.device)
        if self.coords == "symmetric":
            return off * 0.5
        off[:, self.root % n] = 0.0
        return off

    def perturbation_log_density(self, theta: Tensor, u: Tensor) -> Tensor:
        """``log p(U = u; theta)`` per row for ``U = theta + noise``, ``(N, *event) -> (N,)``.

        Gumbel(0, 1): ``-(g + exp(-g))`` with ``g = u - theta``; Logistic(0, 1): ``-g - 2 softplus(-g)``.
        For symmetric weights (SpanningTree) each unordered pair counts once, its gradient split evenly
        between ``theta[i, j]`` and ``theta[j, i]``.
        """
        g = u - theta
        mask = self._mask(g)
        if mask is not None:  # where(), not a product: a masked-out diagonal may hold -inf weights
            g = torch.where(mask > 0, g, torch.zeros((), dtype=g.dtype, device=g.device))
        if self.noise == "gumbel":
            lp = -(g + torch.exp(-g))
        elif self.noise == "logistic":
            lp = -g - 2 * F.softplus(-g)
        else:
            raise ValueError(f"no perturbation density is known for {self.kind}")
        if mask is not None:
            lp = torch.where(mask > 0, lp * mask, torch.zeros((), dtype=lp.dtype, device=lp.device))
        return _flat_sum(lp)

    def noise_mean(self) -> float:
        """``E[noise]``: Euler's constant for Gumbel(0, 1), 0 for Logistic(0, 1)."""
        return EULER_GAMMA if self.noise == "gumbel" else 0.0

    def project(self, grad: Tensor) -> Tensor:
        """Put a gradient w.r.t. ``theta`` in the convention of the density: symmetrised for symmetric
        weights, zero on entries that are never chosen, unchanged otherwise."""
        if self.coords == "all":
            return grad
        mask = self._mask(grad)
        if self.coords == "symmetric":
            grad = 0.5 * (grad + grad.transpose(-1, -2))
        return torch.where(mask > 0, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))

    def score_log_prob(self, theta: Tensor, x: Tensor, u: Tensor | None) -> Tensor:
        """The log-probability the score-function estimators differentiate: exact when available, else the
        perturbation density of ``u`` (the perturbed weights ``x`` was the argmax of)."""
        if self.exact_log_prob:
            return self.log_prob(theta, x)
        if u is None:
            raise ValueError(f"{self.kind} needs the perturbed weights u for its score function")
        return self.perturbation_log_density(theta, u)


def structure_kind(structure) -> str:
    """The kind ``structure`` (an instance or a class) declares (``Structure.kind``, inherited by subclasses), else
    its class's name."""
    cls = structure if isinstance(structure, type) else type(structure)
    return getattr(cls, "kind", None) or cls.__name__


def structure_info(structure) -> StructureInfo:
    """Read the facts ``structure`` (an instance or a class) declares for the estimators.

    Subclasses of :class:`sst.Structure` have defaults for each (Gumbel noise on every coordinate, no exact law);
    other objects have neither a log-probability nor a density unless they declare ``noise`` or
    ``exact_log_prob``. Raises ValueError for a ``noise`` or ``perturbed_coordinates`` the estimators do not
    know."""
    cls = structure if isinstance(structure, type) else type(structure)
    kind = structure_kind(structure)
    if issubclass(cls, Structure):
        exact = cls.has_exact_law()
    else:
        exact = callable(getattr(cls, "exact_log_prob", None)) and callable(getattr(cls, "exact_mean", None))
    noise = getattr(structure, "noise", None)
    if noise is not None and noise not in NOISE_KINDS:
        raise ValueError(f"{kind}.noise must be one of {', '.join(NOISE_KINDS)} or None, got {noise!r}")
    coords = getattr(structure, "perturbed_coordinates", "all")
    if coords not in PERTURBED_COORDINATES:
        raise ValueError(f"{kind}.perturbed_coordinates must be one of {', '.join(PERTURBED_COORDINATES)}, got "
                         f"{coords!r}")
    ndim = getattr(structure, "event_ndim", 1)
    root = getattr(structure, "root", 0) if not isinstance(structure, type) else 0
    return StructureInfo(kind, int(ndim) if isinstance(ndim, int) else 1, bool(exact), noise, coords,
                         int(root) if isinstance(root, int) else 0, structure)


def gumbel_from_uniform(v: Tensor) -> Tensor:
    """Gumbel(0, 1) draws ``-log(-log v)`` from uniforms in the open interval (0, 1)."""
    return -torch.log(-torch.log(v))


def logistic_from_uniform(v: Tensor) -> Tensor:
    """Logistic(0, 1) draws ``log v - log(1 - v)`` from uniforms in the open interval (0, 1)."""
    return torch.log(v) - torch.log1p(-v)
