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
"""

from __future__ import annotations

import torch
from torch import Tensor

from sst import noise
from sst.validation import check_floating, check_regularizer, check_tau, check_weights

__all__ = ["Structure"]

_HALF = (torch.float16, torch.bfloat16)


def _widen(x: Tensor) -> Tensor:
    """``x`` in float32 if it is float16 / bfloat16 (differentiable), else ``x`` itself."""
    return x.float() if x.dtype in _HALF else x


class Structure:
    """Base class. Class attributes: ``regularizers`` (names, first = default) and ``event_ndim``."""

    regularizers: tuple[str, ...] = ()
    event_ndim: int = 1
    #: whether ``-inf`` weights are accepted, meaning "never selected" (TopK, Categorical, Binary; an absent edge
    #: for SpanningTree and Arborescence); the others raise ValueError
    allows_neg_inf: bool = False

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
