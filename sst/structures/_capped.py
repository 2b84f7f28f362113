"""Solvers ``x_i = h(z_i - nu)`` with ``nu`` chosen so that ``sum_i x_i = k``, and their implicit gradients.

These are the maximisers over the capped simplex ``{0 <= x <= 1, sum x = k}`` of ``<z, x> - f(x)`` for three
separable regularizers f (z = w / tau):

==================== =========================== ==============================
kind                 f(x)                        h(t)
==================== =========================== ==============================
euclidean            ||x||^2 / 2                 clamp(t, 0, 1)
categorical_entropy  sum x log x                 min(1, exp(t))
binary_entropy       sum x log x + (1-x)log(1-x) sigmoid(t)
==================== =========================== ==============================

``nu`` is found by bisection on a bracket where the sum crosses k (a fixed number of iterations, no host sync),
then polished: exactly for the first two (solve for nu on the identified active set), by safeguarded Newton steps
for the sigmoid. The backward pass is implicit differentiation of the optimality conditions, not backprop through
the iterations: with ``h'_i`` the slope at the solution, ``dx/dz = diag(h') - h' h'^T / sum(h')``. Written in terms
of the output x, the backward is itself differentiable (double backward works).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sst.validation import static_int

__all__ = ["KINDS", "capped_simplex"]

KINDS = ("euclidean", "categorical_entropy", "binary_entropy")


def _h(kind: str, t: Tensor) -> Tensor:
    if kind == "euclidean":
        return t.clamp(0.0, 1.0)
    if kind == "categorical_entropy":
        return torch.exp(t.clamp(max=0.0))
    return torch.sigmoid(t)


def _slope(kind: str, x: Tensor) -> Tensor:
    """h'(t) at the solution, written in terms of x = h(t)."""
    if kind == "euclidean":
        return ((x > 0) & (x < 1)).to(x.dtype)
    if kind == "categorical_entropy":
        return torch.where(x < 1, x, torch.zeros_like(x))
    return x * (1 - x)


def _bracket(kind: str, z: Tensor, k: int) -> tuple[Tensor, Tensor]:
    n = z.shape[-1]
    zmin, zmax = z.amin(-1, keepdim=True), z.amax(-1, keepdim=True)
    if kind == "euclidean":
        return zmin - 1.0, zmax
    if kind == "categorical_entropy":
        return zmin, zmax - math.log(k / n)
    c = math.log(k / (n - k))  # logit(k / n)
    return zmin - c, zmax - c


def _solve(kind: str, z: Tensor, k: int) -> Tensor:
    """``nu`` (..., 1) with ``sum h(z - nu) = k``; z (..., n) in float64."""
    lo, hi = _bracket(kind, z, k)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = _h(kind, z - mid).sum(-1, keepdim=True) > k
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    nu = 0.5 * (lo + hi)
    for _ in range(2):  # polish
        t = z - nu
        if kind == "euclidean":
            active = (t > 0) & (t < 1)
            cnt = active.sum(-1, keepdim=True)
            capped = (t >= 1).sum(-1, keepdim=True)
            zs = torch.where(active, z, torch.zeros_like(z)).sum(-1, keepdim=True)
            new = (zs + capped - k) / cnt.clamp_min(1)
            ok = cnt > 0
        elif kind == "categorical_entropy":
            capped = t >= 0
            free = k - capped.sum(-1, keepdim=True)
            lse = torch.logsumexp(z.masked_fill(capped, float("-inf")), -1, keepdim=True)
            ok = (free > 0) & torch.isfinite(lse)
            new = lse - torch.log(free.clamp_min(1).to(z.dtype))
        else:
            x = torch.sigmoid(t)
            slope = (x * (1 - x)).sum(-1, keepdim=True)
            ok = slope > 0
            new = nu + (x.sum(-1, keepdim=True) - k) / slope.clamp_min(torch.finfo(z.dtype).tiny)
        new = torch.minimum(torch.maximum(new, lo), hi)
        nu = torch.where(ok, new, nu)
    return nu


class _CappedSimplex(torch.autograd.Function):
    """``h(z - nu)`` with the implicit gradient; ``setup_context`` form with a generated vmap rule (the solve is
    tensor code with a fixed number of steps), so ``torch.func`` transforms it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Tensor, k: int, kind: str) -> Tensor:
        z64 = z.double()
        nu = _solve(kind, z64, k)
        return _h(kind, z64 - nu).to(z.dtype)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, int, str], output: Tensor) -> None:
        ctx.kind = inputs[2]
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        hp = _slope(ctx.kind, x)
        tot = hp.sum(-1, keepdim=True)
        proj = (hp * g).sum(-1, keepdim=True) / torch.where(tot > 0, tot, torch.ones_like(tot))
        return hp * (g - proj), None, None


def capped_simplex(z: Tensor, k: int, kind: str) -> Tensor:
    """``x = h(z - nu)`` with ``sum x = k`` over the last dim: ``(..., n) -> (..., n)``; ``1 <= k <= n``.

    Differentiable in z by implicit differentiation. ``kind`` is one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if z.shape[-1] == k:  # the polytope is the single point 1
        return torch.ones_like(z) + 0 * z
    return _CappedSimplex.apply(z, static_int(k), kind)  # a constant of a traced graph
