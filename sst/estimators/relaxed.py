"""Pathwise estimators through a relaxation: SST / Gumbel-softmax / binary Concrete, and straight-through."""

from __future__ import annotations

import torch
from torch import Tensor

import sst
from sst.estimators.base import Estimator, Objective, call_objective
from sst.estimators.structinfo import StructureInfo


class Relaxed(Estimator):
    """Stochastic softmax trick: ``f`` is evaluated at the relaxed sample
    ``X_tau = argmax_{x in conv X} <theta + noise, x> - tau * reg(x)`` (``sst.sample``) and the gradient is
    the reparameterisation gradient. Biased for ``E[f(X)]`` (it is unbiased for the relaxed objective);
    the bias vanishes as ``tau -> 0`` while the variance grows.

    Options: ``tau``, ``regularizer``, ``num_samples``.
    """

    name = "relaxed"
    hard = False

    def estimate(self, info: StructureInfo, structure, logits: Tensor, theta: Tensor, f: Objective,
                 context: Tensor | None, generator: torch.Generator | None):
        x = sst.sample(structure, theta, tau=self.tau, regularizer=self.regularizer, hard=self.hard,
                       generator=generator)
        value = call_objective(f, x)
        return value.mean(), x, value, {}


class StraightThrough(Relaxed):
    """Straight-through: the exact sample ``argmax <theta + noise, x>`` in the forward pass, the gradient of
    the relaxed sample (same noise) in the backward pass (``sst.sample(..., hard=True)``). Biased.

    Options: ``tau``, ``regularizer``, ``num_samples``.
    """

    name = "straight_through"
    hard = True
