"""What the estimators need to know about a structure: its log-probability or its perturbation density.

Categorical and Binary samples have exact, cheap log-probabilities. For the other structures the law of
``X = argmax <U, x>`` is intractable, so score-function estimators use the density of the perturbation
``U = theta + noise`` instead (as the SST paper's NRI code does): ``E_U[f(argmax U) d/dtheta log p(U; theta)]``
is the exact gradient of ``E[f(X)]``, only with more variance.

The structure is recognised by the name of its class or of one of its base classes, so a subclass of
``sst.TopK`` is treated as a top-k structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

EULER_GAMMA = 0.5772156649015329

# kind -> (event dims, exact log-probability, noise, perturbed coordinates)
#   coordinates: "all" every entry is an independent draw and a variable; "symmetric" one draw per
#   unordered pair {i, j}, i != j, shared by (i, j) and (j, i); "arborescence" the entries i -> j with
#   i != j and j != root (the diagonal and the edges into the root are perturbed but never chosen, so their
#   noise is left out of the density: unbiased either way, lower variance without).
_KNOWN: dict[str, tuple[int, bool, str, str]] = {
    "Categorical": (1, True, "gumbel", "all"),
    "Binary": (1, True, "logistic", "all"),
    "TopK": (1, False, "gumbel", "all"),
    "CorrelatedTopK": (1, False, "gumbel", "all"),
    "SpanningTree": (2, False, "gumbel", "symmetric"),
    "Arborescence": (2, False, "gumbel", "arborescence"),
    "Permutation": (2, False, "gumbel", "all"),
}


def _flat_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(-1)


@dataclass(frozen=True)
class StructureInfo:
    """Score-function facts about one structure kind."""

    kind: str
    event_ndim: int
    exact_log_prob: bool
    noise: str | None
    coords: str
    root: int = 0

    @staticmethod
    def known_kinds() -> tuple[str, ...]:
        return tuple(_KNOWN)

    # exact law (Categorical, Binary) -------------------------------------------------------------------
    def log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact ``log p(x; theta)`` per row, ``(N, *event) -> (N,)`` (Categorical and Binary only)."""
        if self.kind == "Categorical":
            return _flat_sum(x * torch.log_softmax(theta, -1))
        if self.kind == "Binary":
            return _flat_sum(x * F.logsigmoid(theta) + (1 - x) * F.logsigmoid(-theta))
        raise ValueError(f"{self.kind} has no tractable log-probability; use the perturbation density")

    def mean(self, theta: Tensor) -> Tensor:
        """``E[X]`` under the exact law (Categorical: softmax; Binary: sigmoid)."""
        if self.kind == "Categorical":
            return torch.softmax(theta, -1)
        if self.kind == "Binary":
            return torch.sigmoid(theta)
        raise ValueError(f"E[X] is not tractable for {self.kind}")

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
    """The known kind of ``structure`` (an instance or a class), by its class or a base class, else its
    class name."""
    cls = structure if isinstance(structure, type) else type(structure)
    for klass in cls.__mro__:
        if klass.__name__ in _KNOWN:
            return klass.__name__
    return cls.__name__


def structure_info(structure) -> StructureInfo:
    """Describe ``structure`` for the estimators (unknown kinds: no log-probability, no density)."""
    kind = structure_kind(structure)
    if kind in _KNOWN:
        ndim, exact, noise, coords = _KNOWN[kind]
        root = getattr(structure, "root", 0) if not isinstance(structure, type) else 0
        return StructureInfo(kind, ndim, exact, noise, coords, int(root))
    ndim = getattr(structure, "event_ndim", 1)
    return StructureInfo(kind, int(ndim) if isinstance(ndim, int) else 1, False, None, "all")


def gumbel_from_uniform(v: Tensor) -> Tensor:
    """Gumbel(0, 1) draws ``-log(-log v)`` from uniforms in the open interval (0, 1)."""
    return -torch.log(-torch.log(v))


def logistic_from_uniform(v: Tensor) -> Tensor:
    """Logistic(0, 1) draws ``log v - log(1 - v)`` from uniforms in the open interval (0, 1)."""
    return torch.log(v) - torch.log1p(-v)
