"""The estimator interface: one call, one surrogate loss, whatever the estimator.

Conventions shared by every estimator (see :func:`sst.estimators.build` for the full contract):

* ``logits`` has shape ``(B, *event_shape)``; the structure's own event dims are the trailing ones and any
  dims in between are independent copies. Per-item log-probabilities sum over all non-batch dims.
* ``f`` maps ``(N, *event_shape)`` to ``(N,)`` per-row losses, where ``N = m * B`` for some integer
  ``m >= 1``; row ``r`` is a point for item ``r % B`` (rows are laid out *sample-major*, as produced by
  :func:`tile`). All samples of a step go into one call of ``f``; MuProp, REBAR and RELAX call it once more
  on their expansion or relaxed points (stacked), so that the backward pass for the parameters ``f`` closes
  over runs through the samples' rows only (about 25% less work on a VAE step than one stacked call).
* ``out.loss`` is a scalar whose *value* is the mean of ``f`` over the forward samples and whose
  *gradient* is the estimator: ``logits.grad`` receives the batch mean of the per-item gradient estimates,
  the parameters ``f`` closes over receive the gradient of the mean of ``f`` at the forward samples, and
  the estimator's own parameters (baseline networks, REBAR/RELAX control variates) receive their training
  signal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sst.estimators.structinfo import StructureInfo, structure_info

Objective = Callable[[Tensor], Tensor]


@dataclass
class EstimatorOutput:
    """What an estimator returns.

    Attributes:
        loss: scalar surrogate. Its value is the mean of ``value``; ``loss.backward()`` leaves the gradient
            estimate (batch mean of the per-item estimates) in ``logits.grad``.
        x: the sample(s) of the forward pass: ``(B, *event)`` when ``num_samples == 1``, else
            ``(num_samples, B, *event)``. ``x.reshape(-1, *event)`` is exactly the (sample-major) rows that
            ``f`` was evaluated on for the objective values.
        value: the per-item objective values ``f(x)`` (detached), ``(B,)`` or ``(num_samples, B)``.
        stats: detached scalar tensors for logging (baseline error, learned temperature, ...).
    """

    loss: Tensor
    x: Tensor
    value: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)


def tile(t: Tensor, rows: int) -> Tensor:
    """Repeat a per-item tensor ``t`` of shape ``(B, ...)`` to ``(rows, ...)``, sample-major.

    ``rows`` must be a multiple of ``B``; row ``r`` of the result is ``t[r % B]``. This is the layout in
    which estimators hand stacked points to ``f``, so an objective that closes over per-item data reads::

        f = lambda z: recon_nll(sst.estimators.tile(x, z.shape[0]), z)
    """
    b = t.shape[0]
    if rows % b != 0:
        raise ValueError(f"rows must be a multiple of the batch size {b}, got {rows}")
    m = rows // b
    if m == 1:
        return t
    return t.repeat(m, *([1] * (t.dim() - 1)))


def flat_sum(t: Tensor) -> Tensor:
    """Sum over all dims but the first: ``(N, ...) -> (N,)``."""
    return t.reshape(t.shape[0], -1).sum(-1)


def zero_valued(t: Tensor) -> Tensor:
    """``t - t.detach()``: zero in value, identity in gradient."""
    return t - t.detach()


def call_objective(f: Objective, points: Tensor) -> Tensor:
    """Evaluate ``f`` on ``(N, *event)`` rows and check that it returned ``(N,)``."""
    out = f(points)
    if not isinstance(out, Tensor) or out.shape != points.shape[:1]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"f must map points of shape (N, *event) = {tuple(points.shape)} to per-row losses of shape "
            f"({points.shape[0]},), got {got}. Rows are sample-major (row r belongs to item r % batch): "
            "tile per-item data with sst.estimators.tile(data, z.shape[0])."
        )
    return out


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"tau must be a finite positive number, got {tau}")
    return tau


class Estimator(nn.Module):
    """Base class. Subclasses implement :meth:`estimate` on the flat ``(S*B, *event)`` rows.

    Attributes:
        name: registry name.
        supported: structure kinds (``Structure.kind``) this estimator can serve, or ``None`` for every structure.
        tau: temperature of the relaxation (float > 0). The caller may set it between calls (annealing).
        regularizer: name of the relaxation's regularizer (``None``: the structure's default).
        num_samples: samples per item.
    """

    name: str = "estimator"
    supported: tuple[str, ...] | None = None

    def __init__(self, tau: float = 1.0, regularizer: str | None = None, num_samples: int = 1,
                 event_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.tau = tau
        self.regularizer = regularizer
        num_samples = int(num_samples)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.event_shape = tuple(int(d) for d in event_shape) if event_shape is not None else None

    # temperature -----------------------------------------------------------------------------------
    @property
    def tau(self) -> float:
        """Relaxation temperature; settable between calls (e.g. annealing)."""
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau = _check_tau(value)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, regularizer={self.regularizer}, num_samples={self.num_samples}"

    # support ---------------------------------------------------------------------------------------
    def check_structure(self, structure) -> StructureInfo:
        """Raise ValueError when this estimator cannot serve ``structure``; return its description."""
        info = structure_info(structure)
        if self.supported is not None and info.kind not in self.supported:
            raise ValueError(
                f"estimator {self.name!r} supports only the structures {', '.join(self.supported)}; "
                f"got {type(structure).__name__}"
            )
        if not self.needs_density or info.exact_log_prob or info.noise is not None:
            return info
        raise ValueError(
            f"estimator {self.name!r} needs a log-probability or a perturbation density, which is not known "
            f"for {type(structure).__name__}; supported: {', '.join(info.known_kinds())}"
        )

    needs_density: bool = False

    # call ------------------------------------------------------------------------------------------
    def forward(self, structure, logits: Tensor, f: Objective, context: Tensor | None = None,
                generator: torch.Generator | None = None) -> EstimatorOutput:
        """Sample, evaluate ``f`` and build the surrogate loss. See :func:`sst.estimators.build`."""
        info = self.check_structure(structure)
        if not isinstance(logits, Tensor) or logits.dim() < 1 + info.event_ndim:
            raise ValueError(
                f"logits must have shape (batch, *event_shape) with at least {info.event_ndim} event dims for "
                f"{type(structure).__name__}, got {tuple(getattr(logits, 'shape', ()))}"
            )
        if self.event_shape is not None and tuple(logits.shape[1:]) != self.event_shape:
            raise ValueError(
                f"logits must have shape (batch, *event_shape) = (batch, {', '.join(map(str, self.event_shape))})"
                f", got {tuple(logits.shape)}"
            )
        batch = logits.shape[0]
        theta = tile(logits, batch * self.num_samples)
        loss, x, value, stats = self.estimate(info, structure, logits, theta, f, context, generator)
        if self.num_samples > 1:
            x = x.reshape(self.num_samples, batch, *x.shape[1:])
            value = value.reshape(self.num_samples, batch)
        return EstimatorOutput(loss=loss, x=x, value=value.detach(), stats=stats)

    def estimate(self, info: StructureInfo, structure, logits: Tensor, theta: Tensor, f: Objective,
                 context: Tensor | None, generator: torch.Generator | None
                 ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Return ``(loss, x_rows, value_rows, stats)``; ``theta`` is ``logits`` tiled to ``(S*B, *event)``."""
        raise NotImplementedError
