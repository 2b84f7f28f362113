"""``sst.sample``: a relaxed (SST) or straight-through (hard) sample of any structure."""

from __future__ import annotations

import torch
from torch import Tensor

from sst.structures.base import _HALF, Structure
from sst.validation import checks

__all__ = ["sample", "straight_through"]


class _StraightThrough(torch.autograd.Function):
    """Forward: exactly ``hard``; backward: the whole gradient goes to ``soft``. ``setup_context`` form with a
    generated vmap rule (``torch.func`` transforms it)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(hard: Tensor, soft: Tensor) -> Tensor:
        return hard.clone()

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[None, Tensor]:
        return None, g


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """``hard`` in the forward pass (bit-exact), the gradient of ``soft`` in the backward pass.

    Same value as ``hard - soft.detach() + soft`` without its rounding error.
    """
    return _StraightThrough.apply(hard.detach(), soft)


def _sample_shape(sample_shape: object) -> torch.Size:
    """``sample_shape`` as a ``torch.Size``; ValueError unless it is a sequence of ints >= 0."""
    if isinstance(sample_shape, int) or not isinstance(sample_shape, (tuple, list, torch.Size)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in sample_shape):
        raise ValueError(f"sample_shape must be a tuple of non-negative ints such as () or (10,), got {sample_shape!r}")
    return torch.Size(sample_shape)


def sample(S: Structure, theta: Tensor, tau: float | Tensor = 1.0, regularizer: str | None = None, hard: bool = False,
           generator: torch.Generator | None = None, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
    """Sample ``X_tau = S.relax(S.perturb(theta), tau, regularizer)``, differentiable in ``theta``.

    Args:
        S: the structure (``sst.TopK(3)``, ...). theta: logits with the structure's layout ``(..., *event)``.
        tau: temperature > 0. regularizer: one of ``S.regularizers`` (None: the first).
        hard: if True, return the exact sample ``S.argmax(U)`` of the same perturbation U in the forward pass and
            the relaxed sample's gradient in the backward pass (straight-through).
        generator: optional ``torch.Generator`` for the noise.
        sample_shape: leading dims of independent draws (as in ``torch.distributions``): the result has shape
            ``sample_shape + theta.shape``, each draw with its own noise; the draws are perturbed and relaxed in
            one batched call (theta is expanded, not copied), and every draw's gradient flows back to ``theta``.

    A structure with a ``relaxed_sample(theta, tau, hard, generator)`` method draws its own sample instead
    (:class:`sst.subset_baselines.SubsetSampler`: earlier k-subset relaxations that are not ``relax(perturb)``).

    Returns:
        ``(*sample_shape, ..., *event)`` tensor with theta's dtype and device. For half-precision theta (float16,
        bfloat16) the noise, the perturbed logits and both solvers work in float32 and the sample is rounded at the
        end, so the hard sample's law is that of theta's values (noise drawn in bfloat16 lacks the tails: a Binary logit
        of -6 gave no positive sample in 10^6 draws).

    Raises:
        ValueError: ``S`` is not a structure instance, ``sample_shape`` is not a sequence of non-negative ints,
            or ``theta`` is not a floating-point tensor of the structure's layout (or, with checks on, contains
            NaN or infinities the structure cannot honour).
    """
    if not isinstance(S, Structure):
        hint = " (a class: instantiate it)" if isinstance(S, type) else ""
        raise ValueError(f"S must be an sst structure instance such as sst.TopK(k=3) or sst.SpanningTree(), got "
                         f"{type(S).__name__} {S!r}{hint}")
    S._check(theta, "theta")
    shape = _sample_shape(sample_shape)
    if shape:  # the draws as leading batch dims: the noise below is drawn per entry of the expanded shape
        theta = theta.expand(shape + theta.shape)
    if theta.dtype in _HALF:  # noise, perturbed logits and both solvers in float32, the sample rounded back
        with checks(False):  # theta is checked above; its float32 copy has the same values
            return sample(S, theta.float(), tau, regularizer, hard, generator).to(theta.dtype)
    own = getattr(S, "relaxed_sample", None)  # a structure that draws its own (sst.subset_baselines.SubsetSampler)
    if own is not None:
        return own(theta, tau, hard=hard, generator=generator)
    u = S.perturb(theta, generator=generator)
    soft = S.relax(u, tau, regularizer)
    if not hard:
        return soft
    return straight_through(S.argmax(u), soft)
