"""Log-partition and marginals of the k-subset distribution ``p(S) ∝ exp(sum_{i in S} theta_i)``, ``|S| = k``.

``log Z = log e_k(exp(theta))`` (elementary symmetric polynomial). The fast path works in linear space, which is
safe thanks to a change of reference point:

1. Let A be the top-k items and s a threshold between the k-th and (k+1)-th largest ``theta``. Writing every
   k-subset as "A, minus r items of A, plus r items outside A" gives
   ``e_k(exp theta) = exp(sum_A theta) * T`` with ``T = sum_r e_r(u) e_r(v)``, where
   ``u_i = exp(s - theta_i) <= 1`` (i in A, weight of dropping i) and ``v_i = exp(theta_i - s) <= 1``
   (i outside A, weight of adding i), r <= m = min(k, n - k).
2. All weights are <= 1 and ``T >= 1`` (r = 0), so ``e_0..e_m`` can be accumulated in plain floating point
   without overflow while ``C(n, m)`` fits the dtype, and terms that underflow are below ``C(n, m) * tiny``
   relative to T. ``e_r`` of all prefixes is one ``cumsum``: ``E_r = cumsum(w * shift(E_{r-1}))``, so the
   whole recursion is m cumulative sums over the items (no Python loop over items or batch).
3. The dtype of the accumulation is float32 when ``C(n, m) < 1e26``, float64 when ``C(n, m) < 1e260``; beyond
   that the exact log-space tree of :mod:`sst.structures._logspace` is used (autograd, slower).

:func:`marginals` (the hot path) is a custom autograd function: the forward pass runs the prefix recursion
(``pre_p``: e_p of the items before i) and a suffix recursion (``h_p(i) = sum_q c_{p+q+1} e_q(items after i)``
with c the other set's e_r), m cumulative sums each, and ``P(i added / dropped) = x_i sum_p pre_p h_p / T``.
The backward pass is the exact Hessian-vector product, i.e. the tangent of the same recursions in the direction
of the upstream gradient (the Jacobian of the marginals is the covariance matrix, which is symmetric). The
identities hold for any (detached) choice of A and s, so the gradients are exact. :func:`marginals_autograd`
computes the same values as the autograd gradient of :func:`log_partition` (differentiable twice).

On CPU tensors, when numba is installed, the same recursions run as compiled loops
(:mod:`sst.structures._numba_kernels`, the batch innermost): one pass per recursion instead of ~10 tensor
operations per step, several times faster at L2X's shape. ``marginals(..., backend="torch")`` forces the
PyTorch path, which the tests compare the kernels against.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from sst.structures._backend import kernels_for
from sst.structures._logspace import log_esp
from sst.validation import static_int, traced

__all__ = ["log_partition", "marginals", "marginals_autograd"]


def _log_binom(n: int, m: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1)


def _log_partition_linear(theta: Tensor, k: int) -> Tensor:
    """``(N, n) -> (N,)`` by the shifted linear-space recursion (see the module docstring)."""
    n = theta.shape[-1]
    m = min(k, n - k)
    with torch.no_grad():
        top = torch.topk(theta, min(k + 1, n), dim=-1)
        vk = top.values[:, k - 1:k]
        s = 0.5 * (vk + top.values[:, k:k + 1]) if k < n else vk
        in_a = torch.zeros_like(theta, dtype=torch.bool).scatter(-1, top.indices[:, :k], True)
    zero = torch.zeros((), dtype=theta.dtype, device=theta.device)
    base = torch.where(in_a, theta, zero).sum(-1)
    if m == 0:
        return base
    d = theta - s
    # weights <= 1; clipped at exp(-cut) so that exp never underflows (much slower on CPU, and below resolution)
    cut = 80.0 if theta.dtype != torch.float64 else 700.0
    e = torch.exp(torch.where(in_a, -d, d).clamp_min(-cut))
    w = torch.stack([torch.where(in_a, zero, e), torch.where(in_a, e, zero)], 0)  # (2, N, n): add / drop
    er = w.cumsum(-1)  # e_1 of every prefix
    last = [er[..., -1]]
    for _ in range(2, m + 1):
        er = F.pad((w[..., 1:] * er[..., :-1]).cumsum(-1), (1, 0))
        last.append(er[..., -1])
    ends = torch.stack(last, -1)  # (2, N, m): e_1..e_m of the "add" and "drop" weights
    return base + torch.log1p((ends[0] * ends[1]).sum(-1))


def _reference(theta: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k mask A, the "add"/"drop" weights ``(2, N, n)`` (<= 1, 0 off their set) and the unclipped mask."""
    n = theta.shape[-1]
    with torch.no_grad():
        top = torch.topk(theta, min(k + 1, n), dim=-1)
        vk = top.values[:, k - 1:k]
        s = 0.5 * (vk + top.values[:, k:k + 1]) if k < n else vk
        in_a = torch.zeros_like(theta, dtype=torch.bool).scatter(-1, top.indices[:, :k], True)
        cut = 80.0 if theta.dtype != torch.float64 else 700.0
        d = torch.where(in_a, s - theta, theta - s)  # <= 0
        e = torch.exp(d.clamp_min(-cut))
        zero = torch.zeros((), dtype=theta.dtype, device=theta.device)
        x = torch.stack([torch.where(in_a, zero, e), torch.where(in_a, e, zero)], 0)
        live = torch.stack([~in_a, in_a], 0) & (d > -cut)
    return in_a, x, live


class _Scan:
    """``cumsum([0, a * b (+ c * d)])`` over the last dim, ``(..., n) -> (..., n + 1)``: entry i sums the items
    before i, the last entry is the total. Eagerly the products are written into one buffer whose first column
    stays 0 (no pad, no temporary); under ``torch.compile`` or ``torch.func`` (:func:`sst.validation.traced`)
    out-of-place, which those trace (no ``out=`` into a strided view, no in-place write of a batched value into
    an unbatched buffer)."""

    def __init__(self, x: Tensor) -> None:
        self.functional = traced()
        if not self.functional:
            self.z = x.new_zeros(*x.shape[:-1], x.shape[-1] + 1)

    def scan(self, a: Tensor, b: Tensor, c: Tensor | None = None, d: Tensor | None = None) -> Tensor:
        if self.functional:
            v = a * b if c is None else torch.addcmul(a * b, c, d)
            return F.pad(v, (1, 0)).cumsum(-1)
        zt = self.z[..., 1:]
        torch.mul(a, b, out=zt)
        if c is not None:
            zt.addcmul_(c, d)
        return self.z.cumsum(-1)

    def add(self, t: Tensor, other: Tensor) -> Tensor:
        """``t + other``, in place into ``t`` eagerly (a fresh tensor of this pass)."""
        return t + other if self.functional else t.add_(other)

    def addcmul(self, t: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """``t + a * b``, in place into ``t`` eagerly (under vmap, in-place updates take the slow fallback)."""
        return torch.addcmul(t, a, b) if self.functional else t.addcmul_(a, b)


def _forward_pass(x: Tensor, m: int) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor], Tensor, Tensor]:
    """Per-set marginals ``D / T`` (2, N, n) of the add / drop weights x (2, N, n), m <= min(k, n - k).

    ``pre[p]`` is e_p of the items before i (p = 0..m); ``hr[p]`` the suffix contraction
    ``h_p(i) = sum_q c_{p+q+1} e_q(items after i)`` stored with the item axis reversed (the recursion
    ``h_p = c_{p+1} + sum_{l > i} x_l h_{p+1}(l)`` is then a plain cumulative sum); ``D = x * sum_p pre[p] h[p]``.
    Each step is one product written into a buffer whose first column is 0 and one cumulative sum of it, whose
    first n entries are the exclusive sums (no shift, no pad) and whose last is the total.
    Returns ``(mu_sets, pre + [acc], pre_r, hr, e, t)`` for the backward pass, with ``acc = sum_p pre[p] h[p]``,
    ``pre_r[p] = pre[p]`` reversed (p < m), the totals ``e`` (2, N, m + 1) and ``T`` (N,).
    """
    n = x.shape[-1]
    buf = _Scan(x)
    pre = [torch.ones_like(x)]
    ends = [torch.ones_like(x[..., 0])]
    for _ in range(1, m + 1):
        c = buf.scan(x, pre[-1])
        pre.append(c[..., :n])
        ends.append(c[..., n])
    e = torch.stack(ends, -1)  # (2, N, m + 1): e_0..e_m of the add and drop weights
    t = (e[0] * e[1]).sum(-1)  # (N,)
    coef = e.flip(0)  # each set's coefficients are the other set's e_r
    xr = x.flip(-1)
    hr = [coef[..., m:m + 1].expand_as(x)]  # built from p = m - 1 down to 0
    for p in range(m - 2, -1, -1):
        hr.append(buf.add(buf.scan(xr, hr[-1]), coef[..., p + 1:p + 2])[..., :n])
    hr.reverse()
    pre_r = [q.flip(-1) for q in pre[:m]]
    acc_r = pre_r[0] * hr[0]
    for p in range(1, m):
        acc_r = buf.addcmul(acc_r, pre_r[p], hr[p])
    acc = acc_r.flip(-1)
    return x * acc / t.unsqueeze(-1), [*pre, acc], pre_r, hr, e, t


def _tangent_pass(x: Tensor, dx: Tensor, m: int, mu: Tensor, pre: list[Tensor], pre_r: list[Tensor],
                  hr: list[Tensor], e: Tensor, t: Tensor) -> Tensor:
    """Tangent of :func:`_forward_pass`'s marginals for a tangent ``dx`` of the weights (same recursions; the
    tangent of ``pre[0] = 1`` is 0, so its terms are left out)."""
    n = x.shape[-1]
    buf = _Scan(x)
    dpre: list[Tensor] = []  # dpre[p - 1] is the tangent of pre[p]
    dends = [torch.zeros_like(x[..., 0])]
    for p in range(1, m + 1):
        c = buf.scan(dx, pre[p - 1], *((x, dpre[-1]) if p > 1 else ()))
        dpre.append(c[..., :n])
        dends.append(c[..., n])
    de = torch.stack(dends, -1)
    dt = (de[0] * e[1] + e[0] * de[1]).sum(-1)
    dcoef = de.flip(0)
    xr, dxr = x.flip(-1), dx.flip(-1)
    dhr = dcoef[..., m:m + 1].expand_as(x)
    dacc_r = pre_r[m - 1] * dhr
    if m > 1:
        dacc_r = buf.addcmul(dacc_r, dpre[m - 2].flip(-1), hr[m - 1])
    for p in range(m - 2, -1, -1):
        dhr = buf.add(buf.scan(dxr, hr[p + 1], xr, dhr), dcoef[..., p + 1:p + 2])[..., :n]
        if p > 0:
            dacc_r = buf.addcmul(dacc_r, dpre[p - 1].flip(-1), hr[p])
        dacc_r = buf.addcmul(dacc_r, pre_r[p], dhr)
    acc = pre[m + 1]
    return torch.addcmul(dx * acc, x, dacc_r.flip(-1)) / t.unsqueeze(-1) - mu * (dt / t).unsqueeze(-1)


class _KSubsetMarginals(torch.autograd.Function):
    """Marginals of the k-subset family (linear-space recursion); backward = the exact Hessian-vector product,
    computed as the tangent of the same recursion (the Jacobian of the marginals is symmetric).

    ``setup_context`` form with a generated vmap rule, so ``torch.func`` transforms it: the forward returns the
    marginals and then the intermediates the backward needs (non-differentiable outputs; callers keep the
    first)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(theta: Tensor, k: int) -> tuple[Tensor, ...]:
        m = min(k, theta.shape[-1] - k)
        in_a, x, live = _reference(theta, k)
        mu_sets, pre, pre_r, h, e, t = _forward_pass(x, m)
        return (torch.where(in_a, 1 - mu_sets[1], mu_sets[0]), in_a, x, live, mu_sets, e, t, *pre, *pre_r, *h)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, int], output: tuple[Tensor, ...]) -> None:
        theta, k = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(*output[1:])
        ctx.m = min(k, theta.shape[-1] - k)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor, *_: Tensor) -> tuple[Tensor, None]:
        in_a, x, live, mu_sets, e, t, *rest = ctx.saved_tensors
        m = ctx.m
        pre, pre_r, h = list(rest[:m + 2]), list(rest[m + 2:2 * m + 2]), list(rest[2 * m + 2:])
        sign = torch.tensor([1.0, -1.0], dtype=x.dtype, device=x.device).view(2, 1, 1)
        dx = torch.where(live, x * g.to(x.dtype) * sign, torch.zeros((), dtype=x.dtype, device=x.device))
        dmu = _tangent_pass(x, dx, m, mu_sets, pre, pre_r, h, e, t)
        return torch.where(in_a, -dmu[1], dmu[0]).to(g.dtype), None


class _KSubsetMarginalsCPU(torch.autograd.Function):
    """:class:`_KSubsetMarginals` run by the numba kernels (CPU tensors): ``torch.topk`` picks the reference point,
    everything else (weights, recursions, the Hessian-vector product) is one compiled call each way; the backward
    reuses the forward's weights."""

    @staticmethod
    def forward(ctx, theta: Tensor, k: int, kern: ModuleType) -> Tensor:
        n = theta.shape[-1]
        m = min(k, n - k)
        theta = theta.detach().contiguous()
        with torch.no_grad():
            top = torch.topk(theta, k + 1, dim=-1)  # k < n here
            top2 = top.values[:, k - 1:].contiguous()  # the reference point (the kernels take the midpoint)
            in_a = torch.zeros_like(theta, dtype=torch.bool).scatter(-1, top.indices[:, :k], True)
        cut = 80.0 if theta.dtype != torch.float64 else 700.0
        mu, x, live = kern.ksubset_marginals(theta.numpy(), in_a.numpy(), top2.numpy(), m, cut)
        ctx.save_for_backward(theta, in_a, torch.from_numpy(x), torch.from_numpy(live))
        ctx.m, ctx.kern = m, kern
        return torch.from_numpy(mu)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:
        theta, in_a, x, live = ctx.saved_tensors
        gt = g.to(theta.dtype).contiguous()
        grad = ctx.kern.ksubset_marginals_vjp(theta.numpy(), in_a.numpy(), x.numpy(), live.numpy(), ctx.m, gt.numpy())
        return torch.from_numpy(grad).to(g.dtype), None, None


def log_partition(theta: Tensor, k: int) -> Tensor:
    """``log sum_{|S| = k} exp(sum_S theta)`` over the last dim: ``(..., n) -> (...)``. Requires 1 <= k <= n."""
    shape, n = theta.shape[:-1], theta.shape[-1]
    flat = theta.reshape(-1, n)
    lb = _log_binom(n, min(k, n - k))
    if lb < 60.0 and theta.dtype != torch.float64:
        out = _log_partition_linear(flat.float(), k)
    elif lb < 600.0:
        out = _log_partition_linear(flat.double(), k)
    else:
        out = log_esp(flat, k)[..., k]
    return out.to(theta.dtype).reshape(shape)


def marginals(theta: Tensor, k: int, backend: str = "auto") -> Tensor:
    """``P(i in S)`` for ``p(S) ∝ exp(sum_S theta)``, ``|S| = k``: ``(..., n) -> (..., n)``.

    Differentiable in ``theta``: a custom backward computes the exact Hessian-vector product in the same linear
    space (once differentiable). When ``C(n, m)`` exceeds float64's range, autograd through the exact log-space
    tree is used instead (twice differentiable).

    ``backend``: ``"auto"`` runs the numba kernels for CPU tensors when numba is installed and PyTorch otherwise;
    ``"torch"`` always PyTorch; ``"numba"`` requires numba and a CPU tensor (:mod:`sst.structures._backend`).
    """
    k = static_int(k)  # a constant of a traced graph (sst.validation.static_int)
    kern = kernels_for(theta, backend)
    shape, n = theta.shape, theta.shape[-1]
    if n == k:
        return torch.ones_like(theta) + 0 * theta
    lb = _log_binom(n, min(k, n - k))
    if lb < 600.0:
        flat = theta.reshape(-1, n)
        work = flat.float() if (lb < 60.0 and theta.dtype != torch.float64) else flat.double()
        if kern is not None:  # the kernels read -inf ("never selected") themselves
            mu = _KSubsetMarginalsCPU.apply(work, k, kern)
        else:
            mu = _without_neg_inf(work, k)
        return mu.to(theta.dtype).reshape(shape)
    return marginals_autograd(theta, k)  # the log-space tree clamps -inf to its finite "log 0": marginal 0


# How far below a row's smallest finite entry the PyTorch recursion puts a -inf entry: its weight is then clipped
# at exp(-80) / exp(-700) and held constant (as for any entry that far below the reference point), and the result
# there is set to exactly 0 (as TopK.masked's gap, sst.structures.topk.MASK_GAP).
NEG_INF_GAP = 1.0e6


def _without_neg_inf(theta: Tensor, k: int) -> Tensor:
    """:class:`_KSubsetMarginals` of theta (N, n) with ``-inf`` entries ("never selected", at least k finite per
    row) put :data:`NEG_INF_GAP` below the row's smallest finite one, and their marginal (and gradient) exactly 0.
    A few elementwise operations, no host sync."""
    never = torch.isneginf(theta)
    low = theta.detach().masked_fill(never, float("inf")).amin(-1, keepdim=True)
    low = torch.where(torch.isfinite(low), low, torch.zeros_like(low))
    mu = _KSubsetMarginals.apply(torch.where(never, low - NEG_INF_GAP, theta), k)[0]
    return torch.where(never, torch.zeros((), dtype=mu.dtype, device=mu.device), mu)


def marginals_autograd(theta: Tensor, k: int) -> Tensor:
    """The same marginals as the autograd gradient of :func:`log_partition` (double backward supported)."""
    if theta.shape[-1] == k:
        return torch.ones_like(theta) + 0 * theta
    create = theta.requires_grad and torch.is_grad_enabled()
    with torch.enable_grad():
        t = theta if create else theta.detach().requires_grad_()
        lz = log_partition(t, k)
        (mu,) = torch.autograd.grad(lz.sum(), t, create_graph=create)
    return mu
