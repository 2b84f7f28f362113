"""Independent bits: the Logistic-max trick (``w > 0``) and the binary Concrete relaxation ``sigmoid(w / tau)``."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from sst import noise
from sst.structures.base import Structure, _widen
from sst.validation import check_floating

__all__ = ["Binary"]


class Binary(Structure):
    """Vectors in ``{0, 1}^n``: ``w`` and ``x`` have shape ``(..., n)``; every coordinate is its own bit.

    - argmax: ``w > 0``;
    - ``binary_entropy``: ``sigmoid(w / tau)``;
    - perturb: Logistic(0, 1) noise (the difference of two Gumbels), so ``argmax(perturb(theta))`` is
      Bernoulli(sigmoid(theta)).

    ``-inf`` weights mean "never selected" (0 in every output, gradient 0).
    """

    regularizers = ("binary_entropy",)
    event_ndim = 1
    allows_neg_inf = True
    kind = "Binary"
    noise = "logistic"

    def exact_log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        """``sum_i x_i log sigmoid(theta_i) + (1 - x_i) log sigmoid(-theta_i)`` (``(..., n), (..., n) -> (...)``)."""
        return (x * F.logsigmoid(theta) + (1 - x) * F.logsigmoid(-theta)).sum(-1)

    def exact_mean(self, theta: Tensor) -> Tensor:
        """``sigmoid(theta)``."""
        return torch.sigmoid(theta)

    def _argmax(self, w: Tensor) -> Tensor:
        return (w > 0).to(w.dtype)

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        return torch.sigmoid(w / tau)

    def perturb(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``theta + L`` with independent standard Logistic noise ``L`` (never inf); for half-precision ``theta``
        drawn and added in float32, the sum rounded to ``theta``'s dtype (the rounding keeps its sign, so the hard
        sample ``perturb(theta) > 0`` has the right law)."""
        self._check_shape(theta, "theta")
        check_floating(theta, "theta")
        t = _widen(theta)
        return (t + noise.logistic_like(t, generator=generator)).to(theta.dtype)

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """All ``2^n`` binary vectors: ``(2^n, n)``."""
        rows = list(itertools.product((0.0, 1.0), repeat=int(n)))
        return torch.tensor(rows, dtype=dtype or torch.get_default_dtype(), device=device).reshape(len(rows), int(n))
