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
- :func:`one_inverse_marginals`: one batched inverse G of ``L_r`` (grounded at one node), marginals
  ``A_ij (G_ii + G_jj - 2 G_ij)`` (undirected) or ``A_ij (G_jj - G_ji)`` (directed) and a closed-form backward
  (two products, no double backward through a determinant; differentiable again). Its error is
  ``O(eps n K)``, K the largest entry of G (the largest effective resistance to the ground, in units of the
  largest weight): see the error model above :data:`C_VALUE`. The exact default runs it on every graph and
  sends the graphs whose bound exceeds the result dtype's tolerance (:data:`FAST_TOL`) to the elimination.
- :func:`clipped_marginals` (a ``max_range`` clip, as the released code and the NRI experiment): the same inverse
  on every graph, differentiated by autograd as before issue #51 (so the NRI runs do not change), while the clip
  keeps it accurate (condition number about ``n * exp(max_range)``, :func:`one_inverse_accurate`); a larger clip
  runs the exact default on the clipped weights (:func:`clip_theta`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sst.validation import traced

__all__ = ["clip_theta", "clipped_marginals", "stable_weights", "rooted_inverse", "one_inverse_accurate",
           "log_partition_eliminate", "eliminate_marginals", "heaviest_node", "MAX_SPREAD", "one_inverse_marginals",
           "fast_tolerance"]

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


def clipped_marginals(theta: Tensor, valid: Tensor, max_range: float, root: int | None = None) -> Tensor:
    """Tree marginals ``(..., n, n)`` of the clipped ``theta`` (the ``max_range`` path, as the released code and
    the NRI experiment use it), by one batched LU inverse differentiated by autograd: ``A`` from
    :func:`stable_weights` (per column for arborescences), the Laplacian grounded at an endpoint of the heaviest
    edge (undirected) or at ``root``, ``mu_ij = A_ij (G_ii + G_jj - 2 G_ij)`` or ``A_ij (G_jj - G_ji)``. Kept
    operation for operation as before issue #51 so that the NRI runs' values and gradients do not change; the
    closed form of :func:`one_inverse_marginals` gives the same values bit for bit and more accurate gradients
    (float32: 4e-6 relative against 1e-3 here on ill-conditioned graphs; float64: 3e-9 against 6e-5), faster."""
    if root is None:
        a = stable_weights(theta, valid, max_range)
        lap = torch.diag_embed(a.sum(-1)) - a
        g = rooted_inverse(lap, heaviest_node(a))
        d = torch.diagonal(g, dim1=-2, dim2=-1)
        return a * (d.unsqueeze(-1) + d.unsqueeze(-2) - 2 * g)
    a = stable_weights(theta, valid, max_range, per_column=True)
    lap = torch.diag_embed(a.sum(-2)) - a
    g = rooted_inverse(lap, root)
    d = torch.diagonal(g, dim1=-2, dim2=-1)
    return a * (d.unsqueeze(-2) - g.transpose(-1, -2))


def stable_weights(theta: Tensor, valid: Tensor, max_range: float, per_column: bool = False) -> Tensor:
    """``exp(clipped - max)`` on the valid entries (0 elsewhere), ``clipped`` from :func:`clip_theta`.

    ``theta`` (..., n, n); ``valid`` (n, n) bool; returns (..., n, n). The clip carries gradient through the
    maximum (see :func:`clip_theta`); the shift by the maximum is detached (the marginals do not depend on it, so
    its exact gradient is 0). Raising the smallest weights bounds the condition number of the Laplacian by about
    ``n * exp(max_range)``, so the solve never returns inf or NaN.
    """
    clipped, mx = clip_theta(theta, valid, max_range, per_column)
    return torch.exp(clipped - mx.detach()).masked_fill(~valid, 0.0)


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


def one_inverse_accurate(max_range: float, dtype: torch.dtype) -> bool:
    """Whether the one-inverse path (:func:`one_inverse_marginals` without a bound) is accurate for a clip of
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


def _eliminate_input(t: Tensor, valid: Tensor, root: int) -> Tensor:
    """The log weights :func:`log_partition_eliminate` reads for theta ``t`` (..., n, n): shifted by the (detached)
    maximum, capped :data:`MAX_SPREAD` below it, invalid entries 0, ``root`` moved last."""
    n = t.shape[-1]
    td = t.detach()
    mx = td.masked_fill(~valid, float("-inf")).amax(dim=(-2, -1), keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    keep = valid & (td - mx > -MAX_SPREAD)
    # below the cap: the value -MAX_SPREAD, the gradient of theta (its marginal is the gradient); -inf (an
    # absent edge): the value -MAX_SPREAD as a constant (gradient 0)
    low = -MAX_SPREAD + torch.where(torch.isfinite(td), t - td, torch.zeros_like(td))
    x = torch.where(keep, t - mx, torch.where(valid, low, torch.zeros_like(td)))
    if root != n - 1:  # rotate the nodes so that root comes last (det L_r does not depend on the order)
        perm = (torch.arange(n, device=t.device) + root + 1) % n
        x = x.index_select(-2, perm).index_select(-1, perm)
    return x


def eliminate_marginals(theta: Tensor, valid: Tensor, root: int) -> Tensor:
    """``d log Z / d theta`` for log weights ``theta`` (..., n, n) by :func:`log_partition_eliminate`.

    ``valid`` (n, n) bool marks the edges (invalid entries are ignored, gradient 0); ``root`` is the node whose
    row/column is removed (moved last). The spread of theta per graph is capped at :data:`MAX_SPREAD`. The result
    is differentiable in ``theta`` (autograd with ``create_graph``) when theta requires grad. Under
    ``torch.compile`` or a ``torch.func`` transform (:func:`sst.validation.traced`) the gradient is taken by
    ``torch.func.grad``, which both trace (the result is differentiable again there too).
    """
    if traced():
        return torch.func.grad(lambda t: log_partition_eliminate(_eliminate_input(t, valid, root)).sum())(theta)
    need_graph = torch.is_grad_enabled() and theta.requires_grad
    with torch.enable_grad():
        t = theta if need_graph else theta.detach().requires_grad_(True)
        logz = log_partition_eliminate(_eliminate_input(t, valid, root))
        (g,) = torch.autograd.grad(logz.sum(), t, create_graph=need_graph)
    return g


# ---------------------------------------------------------------------------------------------------------------
# One inverse, closed-form marginals and backward, with a per-graph error bound (the fast path of the exact default)
#
# Error model (float64 solve; weights shifted so that the largest is 1, per graph or per column; K the largest
# diagonal entry of the grounded inverse G, i.e. the largest effective resistance to the ground node; n nodes):
# the marginals ``A_ij (G_ii + G_jj - 2 G_ij)`` (undirected) or ``A_ij (G_jj - G_ji)`` (directed) are within
# ``C_VALUE eps n (K + 1)`` of the exact ones, and the backward pass within ``C_GRAD eps n (K + 1)`` per unit of
# the upstream gradient. Why linear in K: the triangular factors of a Laplacian are M-matrices, so the
# substitutions add no cancellation and G has a small componentwise relative error; the one cancellation left is
# a difference of G entries of size K. The backward pass needs ``P = G Gbar G`` only through differences along
# one index (``P_ij - P_ii``), so it is associated so that the factor shared by the two terms of each difference
# (``G Gbar``, undirected, with Gbar the symmetric Laplacian of the upstream weights, whose zero row sums make
# ``G Gbar`` of size 1; ``Gbar G^T`` directed) is computed once: its rounding errors then cancel in the difference
# (the other association, or a non-symmetric Gbar, gives errors ~ eps n K^2). Constants measured against the
# log-space elimination on random, clustered, weak-node, chain and uniform graphs (n = 3..60, spreads up to 30,
# K up to 1e10; tests/sst/test_one_inverse.py keeps checking half of each constant): worst ratios 0.5 (values) /
# 0.5 (gradients, per unit of upstream gradient) undirected, 1.6 / 3.0 directed; the constants leave a margin
# of 2.5x or more.
C_VALUE = 4.0
C_GRAD = 8.0

#: (value, gradient, relative gradient) tolerances of the fast path by result dtype: a graph is kept when its
#: value bound is within the first and its gradient bound within the larger of the second and the third times the
#: gradient's scale (the largest ``mu (1 - mu)`` of the graph). float64 keeps docs/library.md's 1e-13 (values),
#: 1e-13 / tau (gradients, absolute) and 1e-8 (relative) with a margin; float32 stays two orders below its 1e-6
#: and below the rounding of a float32 gradient, also where the law is nearly deterministic and the gradient tiny.
#: Graphs beyond them run the elimination.
FAST_TOL = {torch.float64: (2e-14, 5e-14, 1e-9)}
FAST_TOL_DEFAULT = (1e-8, 1e-12, 1e-7)


def fast_tolerance(dtype: torch.dtype) -> tuple[float, float, float]:
    """(value, gradient, relative gradient) tolerances of the fast path for results of ``dtype``
    (:data:`FAST_TOL`)."""
    return FAST_TOL.get(dtype, FAST_TOL_DEFAULT)


def _weights(theta: Tensor, valid: Tensor, directed: bool) -> Tensor:
    """``exp(theta - max)`` on the valid entries (0 elsewhere and at -inf): ``(N, n, n)``. The maximum (detached)
    per graph, or per column when ``directed`` (an arborescence's law is unchanged by a shift of one node's
    incoming weights); an all-invalid column (the root) gets 0."""
    x = theta.masked_fill(~valid, float("-inf"))
    mx = x.detach().amax(dim=-2 if directed else (-2, -1), keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    if torch.is_grad_enabled() and x.requires_grad:
        return torch.exp(x - mx)
    return x.sub_(mx).exp_()  # no graph to keep: in place


def _resistance(g: Tensor, directed: bool) -> Tensor:
    """``G_ii + G_jj - 2 G_ij`` (undirected) or ``G_jj - G_ji`` (directed): ``(N, n, n) -> (N, n, n)``."""
    d = torch.diagonal(g, dim1=-2, dim2=-1)
    if directed:
        return d.unsqueeze(-2) - g.mT
    return (d.unsqueeze(-1) + d.unsqueeze(-2)).sub_(g, alpha=2)


def _lap_vjp(p: Tensor, directed: bool) -> Tensor:
    """``d loss / d a`` through ``L(a)`` given ``p = -d loss / d L`` (N, n, n): ``p_ij - p_jj`` (in-degree
    Laplacian, directed) or ``p_ij - p_ii`` (row sums, undirected)."""
    dp = torch.diagonal(p, dim1=-2, dim2=-1)
    return p - (dp.unsqueeze(-2) if directed else dp.unsqueeze(-1))


def _marginals_vjp(v: Tensor, a: Tensor, g: Tensor, r: Tensor, directed: bool) -> Tensor:
    """``d <v, a * R(G(a))> / d a`` (N, n, n), G the grounded inverse of the Laplacian of ``a``. Undirected: its
    symmetric part (the only part a symmetric ``theta``, the only input of the undirected path, sees), formed here
    in float64: the two directions' terms cancel to the gradient, which can be far smaller than each, and they must
    not reach a float32 ``w`` separately. Two products, associated so that the error is linear in K (see the error
    model above). Differentiable again when its inputs are."""
    w = v * a
    if directed:
        gbar = torch.diag_embed(w.sum(-2)) - w.mT  # d loss / d G
        p = g.mT @ (gbar @ g.mT)
    else:
        gbar = w + w.mT  # the symmetric Laplacian of w + w^T: the symmetric part of d loss / d G
        u = gbar.sum(-1)
        if torch.is_grad_enabled():  # double backward: out of place, recorded
            gbar = torch.diag_embed(u) - gbar
            x = v * r + _lap_vjp((g @ gbar) @ g, False)
            return 0.5 * (x + x.mT)
        gbar.mul_(-0.5).diagonal(dim1=-2, dim2=-1).add_(u, alpha=0.5)  # half of it: the 0.5 of the symmetric part
        p = (g @ gbar) @ g
        dp = torch.diagonal(p, dim1=-2, dim2=-1).clone()  # a copy: p changes in place
        x = p.sub_(dp.unsqueeze(-1)).addcmul_(v, r, value=0.5)  # (_lap_vjp(p) + v * r) / 2
        return x + x.mT
    if torch.is_grad_enabled():  # double backward: out of place, recorded
        return v * r + _lap_vjp(p, directed)
    dp = torch.diagonal(p, dim1=-2, dim2=-1).clone()  # a copy: p changes in place
    return p.sub_(dp.unsqueeze(-2)).addcmul_(v, r)  # _lap_vjp(p) + v * r


class _OneInverse(torch.autograd.Function):
    """Tree marginals of ``theta`` (N, n, n) by one grounded inverse, and which graphs its error bound covers.

    Forward: ``mu`` (N, n, n), ``G`` (N, n, n) and ``fallback`` (N,) bool: True where the bound
    (``C_VALUE eps n (K + 1)`` and ``C_GRAD eps n (K + 1)`` against ``tol``, :data:`FAST_TOL`) fails or the
    factorisation failed; those graphs get ``G = 0``, an unspecified ``mu`` and a zero gradient
    (the caller replaces them). ``tol`` None: no bound (every graph kept). Backward:
    :func:`_marginals_vjp`; differentiable again (as a function of ``theta`` and the saved output G).
    """

    @staticmethod
    def forward(ctx, theta: Tensor, valid: Tensor, root: int | None, cholesky: bool,
                tol: tuple[float, float, float] | None) -> tuple[Tensor, Tensor, Tensor]:
        directed = root is not None
        batch, n = theta.shape[0], theta.shape[-1]
        rows = torch.arange(batch, device=theta.device)
        a = _weights(theta, valid, directed)
        deg = a.sum(-2 if directed else -1)
        if directed:
            ground: int | Tensor = root
            sel: tuple = (slice(None), root)
        else:  # the clip path grounds where the released code does; the exact path at the best-connected node
            ground = heaviest_node(a) if tol is None else deg.argmax(-1)
            sel = (rows, ground)
        m = a.neg()
        m.diagonal(dim1=-2, dim2=-1).copy_(deg)
        m[sel[0], sel[1], :] = 0.0  # the grounded Laplacian: row and column ``ground`` replaced by the unit vector
        m[sel[0], :, sel[1]] = 0.0
        m[sel[0], sel[1], sel[1]] = 1.0
        if cholesky:
            chol, info = torch.linalg.cholesky_ex(m)
            diag = chol.diagonal(dim1=-2, dim2=-1)  # a failed factor (fallback below) must not stop the inverse
            diag.copy_(torch.where((info != 0).unsqueeze(-1), torch.ones_like(diag), diag))
            g = torch.cholesky_inverse(chol)
        else:
            g, info = torch.linalg.inv_ex(m)  # no error check: that would sync with the device
        fallback = torch.zeros(batch, dtype=torch.bool, device=theta.device)
        if tol is not None:
            # K: the largest |G_ij| (on the diagonal for the exact inverse). The computed inverse of a nearly
            # singular L_r is that of L_r + dL with |dL| ~ n eps, so its largest entry is >= 1 / (n^2 eps) when the
            # true K is larger: the bound then fails. After a Cholesky factorisation that inverse is symmetric
            # positive definite, so its largest entry is on its diagonal; after LU it need not be (an inverse with
            # wrong signs and a small diagonal, seen for near-cycles of arborescences): all entries are read
            if cholesky:
                k = torch.diagonal(g, dim1=-2, dim2=-1).amax(-1)
            else:
                lo, hi = torch.aminmax(g.flatten(-2), dim=-1)
                k = torch.maximum(hi, -lo)
            bound = torch.finfo(theta.dtype).eps * n * (k + 1)
        g[sel[0], sel[1], :] = 0.0
        g[sel[0], :, sel[1]] = 0.0
        r = _resistance(g, directed)
        mu = a * r
        if tol is not None:
            # the gradient's scale: the largest variance of an edge indicator, mu (1 - mu) (nearly deterministic
            # laws have tiny gradients, which the gradient tolerance is relative to)
            scale = torch.addcmul(mu, mu, mu, value=-1.0).flatten(-2).amax(-1)
            fallback = (info != 0) | ~(C_VALUE * bound <= tol[0]) \
                | ~(C_GRAD * bound <= torch.clamp_min(tol[2] * scale, tol[1]))  # NaN: fallback
            fb = fallback[:, None, None]
            g.masked_fill_(fb, 0.0)  # mu there: replaced by the caller
            r.masked_fill_(fb, 0.0)
        ctx.directed = directed
        ctx.save_for_backward(theta, g, valid, a, r)
        ctx.mark_non_differentiable(fallback)
        ctx.set_materialize_grads(False)
        return mu, g, fallback

    @staticmethod
    def backward(ctx, v: Tensor | None, vg: Tensor | None, _: None) -> tuple[Tensor | None, None, None, None, None]:
        theta, g, valid, a, r = ctx.saved_tensors
        directed = ctx.directed
        if torch.is_grad_enabled():  # double backward: everything as a function of theta and the output G
            a = _weights(theta, valid, directed)
            r = _resistance(g, directed)
        abar = torch.zeros_like(theta) if v is None else _marginals_vjp(v, a, g, r, directed)
        if vg is not None:  # d <vg, G> / d a (only in double backward)
            abar = abar + _lap_vjp(g.mT @ (vg @ g.mT) if directed else (g @ vg) @ g, directed)
        return (a * abar if torch.is_grad_enabled() else abar.mul_(a)), None, None, None, None


def one_inverse_marginals(theta: Tensor, valid: Tensor, root: int | None = None,
                          tol: tuple[float, float, float] | None = None, cholesky: bool = True) -> Tensor:
    """Tree marginals ``(..., n, n)`` of ``theta`` ``(..., n, n)`` by one grounded inverse (:class:`_OneInverse`).

    ``root`` None: undirected spanning trees (ground: an endpoint of the heaviest edge; both directions of an edge
    hold its marginal); an int: arborescences rooted there (``mu[i, j]`` for the edge i -> j). ``valid`` (n, n)
    marks the edges. ``tol`` None: every graph by the one inverse (no bound, no host sync).
    ``tol = (value, gradient, relative gradient)`` (:func:`fast_tolerance`): a graph whose error bound exceeds it runs
    :func:`eliminate_marginals` instead; finding them is one host sync per call (``nonzero``; free on CPU).
    ``cholesky``: factor the grounded Laplacian by Cholesky (undirected, CPU tensors only) instead of LU.
    Under ``torch.compile`` or a ``torch.func`` transform (:func:`sst.validation.traced`) with a ``tol``: every
    graph by :func:`eliminate_marginals` (no per-graph choice there).
    """
    shape, n = theta.shape, theta.shape[-1]
    if tol is not None and traced():  # torch.compile / torch.func: no per-graph choice (a host sync, a branch on
        # data); every graph by the exact elimination
        ex = eliminate_marginals(theta, valid, n - 1 if root is None else root)
        return ex + ex.mT if root is None else ex
    flat = theta.reshape(-1, n, n)
    # Cholesky on CPU only: torch.cholesky_inverse checks its factor for errors, a host sync on other devices
    mu, _, fallback = _OneInverse.apply(flat, valid, root, cholesky and root is None and flat.device.type == "cpu",
                                        tol)
    if tol is not None:
        idx = fallback.nonzero().squeeze(-1)  # the host sync
        if idx.numel():
            ex = eliminate_marginals(flat.index_select(0, idx), valid, n - 1 if root is None else root)
            mu = mu.index_copy(0, idx, ex + ex.mT if root is None else ex)
    return mu.reshape(shape)
