"""The base class every structure derives from: argmax (SMT), relax (SST), enumerate, perturb, score.

A structure X is a finite set of 0/1 vectors (its vertices). For weights ``w`` with the structure's layout
(``event_shape`` trailing dimensions, any leading batch dimensions):

- ``argmax(w)``: the vertex maximising ``<w, x>`` (no gradient), same dtype and device as ``w``;
- ``relax(w, tau, regularizer)``: ``argmax_{x in conv X} <w, x> - tau * f(x)`` for the named strongly convex
  regularizer ``f``, differentiable in ``w``;
- ``enumerate(n)``: all vertices for size ``n``, ``(M, *event_shape)``, for tests on small sizes;
- ``perturb(theta, generator)``: ``theta + noise`` (Gumbel unless a subclass says otherwise).

Subclasses implement ``_argmax``, ``_relax`` and ``enumerate`` and may override ``_check_shape`` and
``perturb``; the public methods run the checks of :mod:`sst.validation` first.

What the score-function estimators (:mod:`sst.estimators`) need to know about a structure is declared on it, so a
subclass inherits its parent's facts and a new structure states its own: ``kind`` (the name the estimators and
:mod:`sst.diagnostics` know it by), ``noise`` (the law of the noise ``perturb`` adds), ``perturbed_coordinates``
(which entries of the perturbation are independent draws) and, where the law of ``argmax(perturb(theta))`` is
tractable, ``exact_log_prob`` and ``exact_mean``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sst import noise
from sst.validation import check_floating, check_regularizer, check_tau, check_weights

__all__ = ["Structure", "NOISE_KINDS", "PERTURBED_COORDINATES"]

#: the noise laws the estimators know a density for (``Structure.noise``)
NOISE_KINDS = ("gumbel", "logistic")
#: ``Structure.perturbed_coordinates``: "all", every entry an independent draw and a variable; "symmetric", one
#: draw per unordered pair {i, j}, i != j, shared by (i, j) and (j, i); "arborescence", the entries i -> j with
#: i != j and j != root (the diagonal and the edges into the root are perturbed but never chosen)
PERTURBED_COORDINATES = ("all", "symmetric", "arborescence")

_HALF = (torch.float16, torch.bfloat16)


def _widen(x: Tensor) -> Tensor:
    """``x`` in float32 if it is float16 / bfloat16 (differentiable), else ``x`` itself."""
    return x.float() if x.dtype in _HALF else x


class Structure:
    """Base class. Class attributes: ``regularizers`` (names, first = default) and ``event_ndim``; for the
    estimators ``kind``, ``noise`` and ``perturbed_coordinates``, and the methods ``exact_log_prob`` and
    ``exact_mean`` where the sample's law is tractable (see :meth:`has_exact_law`)."""

    regularizers: tuple[str, ...] = ()
    event_ndim: int = 1
    #: whether ``-inf`` weights are accepted, meaning "never selected" (TopK, Categorical, Binary; an absent edge
    #: for SpanningTree and Arborescence); the others raise ValueError
    allows_neg_inf: bool = False
    #: the name the estimators and :mod:`sst.diagnostics` know this structure by (REBAR serves the kinds
    #: "Categorical" and "Binary", the enumerations know "Categorical", "Binary" and "TopK"); a subclass inherits
    #: its parent's; None: the class's own name
    kind: str | None = None
    #: the law of the noise :meth:`perturb` adds to theta, one of :data:`NOISE_KINDS` ("gumbel": Gumbel(0, 1),
    #: the default perturb's; "logistic": Logistic(0, 1)), or None where it has no density the estimators know.
    #: A subclass that overrides ``perturb`` with other noise must say so here
    noise: str | None = "gumbel"
    #: which entries of the perturbation are independent draws that the argmax depends on, one of
    #: :data:`PERTURBED_COORDINATES`; the perturbation density of the score-function estimators counts these
    perturbed_coordinates: str = "all"

    # public API ----------------------------------------------------------------------------------------------
    def exact_log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        """``log p(x; theta)`` of the hard sample ``argmax(perturb(theta))``, summed over the event dims:
        ``(..., *event), (..., *event) -> (...)``, differentiable in ``theta``.

        Only where that law is tractable (Categorical: softmax; Binary: independent sigmoids); a structure that
        overrides this method (and :meth:`exact_mean`) has an exact law, and the score-function estimators use it
        instead of the perturbation density. The base class raises NotImplementedError.
        """
        raise NotImplementedError(f"{type(self).__name__} has no tractable log-probability; the estimators use the "
                                  "density of its perturbation")

    def exact_mean(self, theta: Tensor) -> Tensor:
        """``E[X]`` under the exact law of :meth:`exact_log_prob`: ``(..., *event) -> (..., *event)``."""
        raise NotImplementedError(f"E[X] is not tractable for {type(self).__name__}")

    @classmethod
    def has_exact_law(cls) -> bool:
        """Whether this structure (class) overrides :meth:`exact_log_prob`, i.e. its sample's law is tractable."""
        return cls.exact_log_prob is not Structure.exact_log_prob

    # public API ----------------------------------------------------------------------------------------------
    def argmax(self, w: Tensor) -> Tensor:
        """Exact maximiser of ``<w, x>`` over the vertices: ``(..., *event) -> (..., *event)`` 0/1, no gradient."""
        self._check(w)
        with torch.no_grad():
            return self._argmax(w.detach())

    def relax(self, w: Tensor, tau: float | Tensor = 1.0, regularizer: str | None = None) -> Tensor:
        """``argmax_{x in conv X} <w, x> - tau f(x)``: ``(..., *event) -> (..., *event)``, differentiable in ``w``.

        ``regularizer`` is one of :attr:`regularizers` (None: the first). ``tau`` > 0.
        """
        name = check_regularizer(regularizer, self.regularizers, type(self).__name__)
        tau = check_tau(tau)
        self._check(w)
        if w.dtype in _HALF:  # the solvers need the range of float32
            return self._relax(w.float(), tau, name).to(w.dtype)
        return self._relax(w, tau, name)

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """All vertices for size ``n`` (items, tokens or nodes): ``(M, *event_shape)``. Small ``n`` only."""
        raise NotImplementedError

    def perturb(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``theta + G`` with independent standard Gumbel noise ``G`` of ``theta``'s shape (never inf).

        Half-precision ``theta`` (float16, bfloat16): the noise is drawn and added in float32 and the sum rounded
        to ``theta``'s dtype (rounding can tie close entries; :func:`sst.sample` stays in float32 throughout).
        """
        self._check_shape(theta, "theta")
        check_floating(theta, "theta")
        t = _widen(theta)
        return (t + noise.gumbel_like(t, generator=generator)).to(theta.dtype)

    def score(self, w: Tensor, x: Tensor) -> Tensor:
        """``<w, x>``, the structure's score: ``(..., *event), (..., *event) -> (...)``."""
        return (w * x).flatten(-self.event_ndim).sum(-1) if self.event_ndim > 1 else (w * x).sum(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # hooks ---------------------------------------------------------------------------------------------------
    def _argmax(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        raise NotImplementedError

    def _check_shape(self, w: Tensor, name: str = "w") -> None:
        if not isinstance(w, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
        if w.dim() < self.event_ndim:
            raise ValueError(f"{name} must have at least {self.event_ndim} dimension(s) for {self!r}, "
                             f"got shape {tuple(w.shape)}")

    def _check(self, w: Tensor, name: str = "w") -> None:
        self._check_shape(w, name)
        check_weights(w, name, allow_neg_inf=self.allows_neg_inf)
