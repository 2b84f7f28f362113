"""Matrix-tree theorem helpers for spanning trees and arborescences.

Two formulations of the log-partition ``log Z = log det L_r`` (L the Laplacian of the edge weights
``A = exp(theta)``, with the row and column of a root node r removed) and its gradient, the edge marginals:

- :func:`log_partition_eliminate` (the exact default): Gaussian elimination of ``L_r`` in log space, written so
  that it never subtracts. Eliminating node k from a Laplacian gives the Laplacian of the graph with edge weights
  ``A'_ij = A_ij + A_ik A_kj / d_k`` (Kron reduction), where the pivot ``d_k`` is the sum of k's remaining incoming
  weights (a Laplacian's column sums are 0, so the diagonal is recomputed as a sum instead of being updated by
  subtraction, as in the GTH algorithm for Markov chains), and ``det L_r = prod_k d_k``. In log space every step
  is a ``logsumexp``: no overflow, no underflow and no cancellation at any spread of
  ``theta``, so ``log Z`` has a small relative error and its autograd gradient (the marginals) a small absolute
  error, whatever the conditioning of ``L_r``. Cost: n - 1 steps of ``(..., n, n)`` work (a Python loop over the
  nodes, not the batch); the marginals need a (double-differentiable) autograd pass.
- :func:`rooted_inverse` with :func:`stable_weights` (used when a ``max_range`` clip is set, as the released code
  and the NRI experiment do): one batched inverse of ``L_r``; the clip bounds its condition number by about
  ``n * exp(max_range)``, so it is used only while that keeps it accurate (:func:`one_inverse_accurate`); a larger
  clip runs the elimination on the clipped weights (:func:`clip_theta`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["clip_theta", "stable_weights", "one_inverse_accurate", "rooted_inverse", "log_partition_eliminate",
           "eliminate_marginals", "heaviest_node", "MAX_SPREAD"]

# The exact path caps the spread of theta (max - min over the valid entries of a graph) at this value, so that
# sums of a few log-weights stay finite for any finite input; it changes nothing below it (see docs/library.md).
MAX_SPREAD = 1.0e6


def clip_theta(theta: Tensor, valid: Tensor, max_range: float, per_column: bool = False) -> tuple[Tensor, Tensor]:
    """``max(theta, max(theta) - max_range)`` on the valid entries, and the maximum, both differentiable.

    ``theta`` (..., n, n); ``valid`` (n, n) bool. The maximum ``mx`` is over the valid entries of each matrix
    ((..., 1, 1)), or of each column with ``per_column`` ((..., 1, n); for arborescences, whose law is unchanged
    by a shift of one node's incoming weights); an all-invalid column (the root) gets 0. Returns ``(clipped, mx)``:
    ``clipped`` (..., n, n) is the floor ``mx - max_range`` on the invalid entries (and on ``-inf`` ones, an
    absent edge), which callers ignore or mask.

    The clip is a function of theta through both arguments of ``torch.maximum`` *and* through the maximum (the
    floor moves with the heaviest edge), so autograd gives the exact derivative of the clipped forward, as the
    released code's clip does. Where several entries tie for the maximum its gradient is shared equally among them
    (``torch.amax``), so it is deterministic; at a tie ``theta == floor`` ``torch.maximum`` splits it in half.
    """
    masked = theta.masked_fill(~valid, float("-inf"))
    mx = masked.amax(dim=-2 if per_column else (-2, -1), keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))  # an all-invalid column (the root)
    return torch.maximum(masked, mx - max_range), mx


def stable_weights(theta: Tensor, valid: Tensor, max_range: float, per_column: bool = False) -> Tensor:
    """``exp(clipped - max)`` on the valid entries (0 elsewhere), ``clipped`` from :func:`clip_theta`.

    ``theta`` (..., n, n); ``valid`` (n, n) bool; returns (..., n, n). The clip carries gradient through the
    maximum (see :func:`clip_theta`); the shift by the maximum is detached (the marginals do not depend on it, so
    its exact gradient is 0). Raising the smallest weights bounds the condition number of the Laplacian by about
    ``n * exp(max_range)``, so the solve never returns inf or NaN.
    """
    clipped, mx = clip_theta(theta, valid, max_range, per_column)
    return torch.exp(clipped - mx.detach()).masked_fill(~valid, 0.0)


def one_inverse_accurate(max_range: float, dtype: torch.dtype) -> bool:
    """Whether the one-inverse path (:func:`stable_weights`, :func:`rooted_inverse`) is accurate for a clip of
    ``max_range`` solved in ``dtype``: ``e^max_range * eps(dtype) <= 1e-8``, i.e. ``max_range <= 17.6`` in float64
    (never in float32). The Laplacian's condition number grows like ``n e^max_range``; measured in float64 against
    the log-space elimination of the same clipped weights (n = 5..30, tau 0.02..0.3), the marginals' error is 4e-11
    at max_range 15 (the NRI setting), 5e-9 at 20 (5e-8 for arborescences), 1e-6 at 25, 1e-4 at 30, and above 1
    (invalid marginals) from 40-50 on. Beyond
    this bound callers use :func:`eliminate_marginals` on the clipped weights (exact at any max_range)."""
    return max_range <= math.log(1e-8 / torch.finfo(dtype).eps)


def heaviest_node(a: Tensor) -> Tensor:
    """An endpoint of the heaviest edge of each graph: ``(..., n, n) -> (...)`` long (the row index).

    Removing it from the Laplacian keeps the reduced matrix away from singular when another node is weakly
    connected (always removing node 0 loses all precision when node 0 is the weak one)."""
    n = a.shape[-1]
    return a.detach().reshape(*a.shape[:-2], n * n).argmax(-1) // n


def rooted_inverse(lap: Tensor, root: int | Tensor) -> Tensor:
    """Inverse of ``lap`` (..., n, n) with row and column ``root`` removed, embedded back with zeros there.

    ``root`` is a node index, or a long tensor of shape ``lap.shape[:-2]`` (one root per matrix). Computed as the
    inverse of ``lap`` with row/column ``root`` replaced by the unit vector (block diagonal with a 1 at ``root``),
    whose ``root`` entry is then zeroed: one batched LU inverse, differentiable by autograd.
    """
    n = lap.shape[-1]
    ar = torch.arange(n, device=lap.device)
    if isinstance(root, Tensor):
        is_r = ar == root.unsqueeze(-1)  # (..., n)
    else:
        is_r = ar == root
    eye_r = is_r.unsqueeze(-1) | is_r.unsqueeze(-2)  # row or column root
    unit = (is_r.unsqueeze(-1) & is_r.unsqueeze(-2)).to(lap.dtype)
    m = torch.where(eye_r, unit, lap)
    inv = torch.linalg.inv_ex(m)[0]  # no error check: that would sync with the device
    return torch.where(eye_r, torch.zeros((), dtype=lap.dtype, device=lap.device), inv)


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """``log(exp(a) + exp(b))`` whose double backward stays finite (``torch.logaddexp``'s overflows, inf / inf,
    once the two differ by more than ~700): the shift is detached, so every derivative is a ratio of terms <= 1."""
    m = torch.maximum(a, b).detach()
    return m + torch.log(torch.exp(a - m) + torch.exp(b - m))


def log_partition_eliminate(la: Tensor) -> Tensor:
    """``log det L_r`` for log edge weights ``la`` (..., n, n), ``la[..., i, j]`` the edge i -> j, root r = n - 1.

    L is the in-degree Laplacian (``L_jj = sum_i A_ij``, ``L_ij = -A_ij``); for a symmetric ``la`` it is the
    undirected Laplacian, and ``det L_r`` counts weighted spanning trees. The diagonal of ``la`` and its last
    column are never read (their gradient is exactly 0); they must be finite. Returns ``(...)``.
    """
    n = la.shape[-1]
    total = torch.zeros(la.shape[:-2], dtype=la.dtype, device=la.device)
    b = la
    for k in range(n - 1):
        c = b[..., 1:, 0]  # weights into the node being eliminated, from the remaining nodes (root included)
        ld = torch.logsumexp(c, dim=-1)  # log pivot: a sum, never a difference
        total = total + ld
        if k < n - 2:
            r = b[..., 0, 1:]  # weights out of it
            b = _logaddexp(b[..., 1:, 1:], c.unsqueeze(-1) + r.unsqueeze(-2) - ld[..., None, None])
    return total


def eliminate_marginals(theta: Tensor, valid: Tensor, root: int) -> Tensor:
    """``d log Z / d theta`` for log weights ``theta`` (..., n, n) by :func:`log_partition_eliminate`.

    ``valid`` (n, n) bool marks the edges (invalid entries are ignored, gradient 0); ``root`` is the node whose
    row/column is removed (moved last). The spread of theta per graph is capped at :data:`MAX_SPREAD`. The result
    is differentiable in ``theta`` (autograd with ``create_graph``) when theta requires grad.
    """
    n = theta.shape[-1]
    need_graph = torch.is_grad_enabled() and theta.requires_grad
    with torch.enable_grad():
        t = theta if need_graph else theta.detach().requires_grad_(True)
        td = t.detach()
        mx = td.masked_fill(~valid, float("-inf")).amax(dim=(-2, -1), keepdim=True)
        mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
        keep = valid & (td - mx > -MAX_SPREAD)
        # below the cap: the value -MAX_SPREAD, the gradient of theta (its marginal is the gradient); -inf (an
        # absent edge): the value -MAX_SPREAD as a constant (gradient 0)
        low = -MAX_SPREAD + torch.where(torch.isfinite(td), t - td, torch.zeros_like(td))
        x = torch.where(keep, t - mx, torch.where(valid, low, torch.zeros_like(td)))
        if root != n - 1:  # rotate the nodes so that root comes last (det L_r does not depend on the order)
            perm = (torch.arange(n, device=theta.device) + root + 1) % n
            x = x.index_select(-2, perm).index_select(-1, perm)
        logz = log_partition_eliminate(x)
        (g,) = torch.autograd.grad(logz.sum(), t, create_graph=need_graph)
    return g
