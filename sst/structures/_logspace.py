"""Exact log-space k-subset polynomial arithmetic, reduced as a balanced tree (the fallback of
:mod:`sst.structures._ksubset` when ``C(n, m)`` exceeds float64, and a reference for tests).

A set of items with log-weights ``theta`` has the generating polynomial ``prod_i (1 + exp(theta_i) y)``, whose
coefficient of ``y^j`` is the elementary symmetric polynomial ``e_j``. Multiplying the polynomials of two blocks
is a (truncated) convolution of their coefficient vectors, so ``log e_0..k`` of n items is a balanced tree of
``ceil(log2 n)`` batched log-space convolutions: O(log n) kernel calls instead of the n steps of the sequential
DP, each computed exactly (an explicit logsumexp per output coefficient, no max-shift underflow).

"log 0" is the finite constant :func:`neg` (far below any real value yet far from overflow), never -inf, so
neither the forward pass nor autograd (first or second order) can produce NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["neg", "conv_index", "log_conv", "log_esp", "log_esp_sequential"]


def neg(dtype: torch.dtype, n: int) -> float:
    """The finite "log 0" used in a tree over ``n`` leaves: ``-finfo.max / 2^(depth + 8)``.

    Sums of up to ``2^(depth + 4)`` such values still fit, and ``exp(neg - x)`` is exactly 0 for any real x.
    """
    depth = max(1, math.ceil(math.log2(max(n, 2))))
    return -torch.finfo(dtype).max / 2.0 ** (depth + 8)


def conv_index(la: int, lb: int, lout: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Index ``(lout, la)`` of ``b`` entries ``j - i`` (clamped) and the validity mask of the convolution."""
    j = torch.arange(lout, device=device).unsqueeze(-1)
    i = torch.arange(la, device=device)
    d = j - i
    return d.clamp(0, lb - 1), (d >= 0) & (d < lb)


def log_conv(a: Tensor, b: Tensor, lout: int, neg_value: float) -> Tensor:
    """Truncated log-space convolution: ``c_j = log sum_i exp(a_i + b_{j-i})`` for ``j < lout``.

    ``a`` (..., la), ``b`` (..., lb) -> (..., lout). Exact per coefficient (logsumexp over the terms).
    """
    la, lb = a.shape[-1], b.shape[-1]
    idx, valid = conv_index(la, lb, lout, a.device)
    terms = b[..., idx] + a.unsqueeze(-2)  # (..., lout, la)
    terms = terms.masked_fill(~valid, neg_value)
    return torch.logsumexp(terms, dim=-1)


def log_esp(theta: Tensor, k: int) -> Tensor:
    """``log e_j(exp(theta))`` for ``j = 0..k`` over the last dim: ``(..., n) -> (..., k + 1)``.

    Balanced tree of truncated log-space polynomial products; differentiable (twice) by autograd. The
    gradient of entry ``k`` is the vector of marginals of the k-subset distribution ``p(S) ∝ exp(sum_S theta)``.
    """
    n = theta.shape[-1]
    nv = neg(theta.dtype, n)
    theta = theta.clamp_min(nv / (4 * (k + 1)))
    v = torch.stack([torch.zeros_like(theta), theta], dim=-1)  # (..., n, 2): leaves 1 + e^theta y
    while v.shape[-2] > 1:
        m, length = v.shape[-2], v.shape[-1]
        if m % 2:  # pad with the polynomial 1
            one = torch.full((*v.shape[:-2], 1, length), nv, dtype=v.dtype, device=v.device)
            one[..., 0] = 0.0
            v = torch.cat([v, one], dim=-2)
        lout = min(2 * (length - 1), k) + 1
        v = log_conv(v[..., 0::2, :], v[..., 1::2, :], lout, nv)
    out = v[..., 0, :]
    if out.shape[-1] < k + 1:  # only when k >= n (callers check k <= n)
        pad = torch.full((*out.shape[:-1], k + 1 - out.shape[-1]), nv, dtype=out.dtype, device=out.device)
        out = torch.cat([out, pad], dim=-1)
    return out


def log_esp_sequential(theta: Tensor, k: int) -> Tensor:
    """Reference: the sequential O(nk) log-space DP ``a_j <- logaddexp(a_j, a_{j-1} + theta_i)`` (for tests)."""
    nv = neg(theta.dtype, theta.shape[-1])
    a = torch.full((*theta.shape[:-1], k + 1), nv, dtype=theta.dtype, device=theta.device)
    a[..., 0] = 0.0
    for i in range(theta.shape[-1]):
        shifted = torch.cat([a[..., :1].new_full(a[..., :1].shape, nv), a[..., :-1] + theta[..., i:i + 1]], -1)
        a = torch.logaddexp(a, shifted)
    return a
