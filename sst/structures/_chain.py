"""The correlated k-subset family on a chain: ``p(x) ∝ exp(sum_i a_i x_i + sum_i b_i x_i x_{i+1})``, ``sum x = k``.

Both solvers run a recursion over the number of ones j = 1..k (k steps), each step vectorised over the batch and
the n positions, in log space (``(+)`` is logaddexp, ``scan`` an inclusive log-cumsum-exp over positions):

- ``E_j[i]``: configurations of positions 0..i with j ones, the last of them at i;
- ``G_j = scan(E_j)``: configurations of positions 0..i with j ones;
- ``E_1 = a``, ``E_j[i] = a_i + (G_{j-1}[i-2] (+) (b_{i-1} + E_{j-1}[i-1]))``: the previous one is either at least
  two positions back (no pairwise term) or adjacent (pairwise term ``b_{i-1}``);
- ``log Z = (+)_i E_k[i]``.

The mirror recursion from the right (``F_r``, ``H_r``) gives the continuations, and the unary and pairwise marginals
are sums over j of prefix x suffix terms. The backward pass (the Hessian of ``log Z`` times the upstream gradient;
the Jacobian of the marginals is symmetric) is the forward-mode derivative of the same computation in the upstream
gradient's direction, written out with the tangent rule of each primitive: exact, no finite differences, no double
backward. In the max-plus semiring the same recursion gives the best score; the maximiser is recovered by
backtracking through ``cummax`` indices (k gathers), exact and tie-safe.

"log 0" is a finite constant, and exp is only taken of arguments clipped to the dtype's range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sst.validation import static_int

__all__ = ["marginals", "log_partition", "argmax"]

_Pair = tuple[Tensor, Tensor | None]  # (log-space value, tangent or None)


class _Tape:
    """Records the values of the costly log-space primitives in the forward pass and replays them in the
    backward (tangent) pass, which then only computes tangents."""

    def __init__(self) -> None:
        self.values: list[Tensor] = []
        self.replay_at: int | None = None

    def __call__(self, compute):  # noqa: ANN001, ANN204
        if self.replay_at is None:
            value = compute()
            self.values.append(value)
            return value
        value = self.values[self.replay_at]
        self.replay_at += 1
        return value

    def rewind(self) -> _Tape:
        self.replay_at = 0
        return self


def _neg(dtype: torch.dtype) -> float:
    return -torch.finfo(dtype).max / 64


def _cut(dtype: torch.dtype) -> float:
    return 80.0 if dtype != torch.float64 else 700.0


def _wexp(x: Tensor) -> Tensor:
    """``exp(x)`` for ``x <= 0`` (weights), clipped below so exp never underflows (slow on CPU)."""
    return torch.exp(x.clamp_min(-_cut(x.dtype)))


def _shift(x: Tensor | None, s: int, value: float) -> Tensor | None:
    """``y[..., i] = x[..., i - s]`` (s > 0: right; s < 0: left), ``value`` where out of range; same length."""
    if x is None:
        return None
    n = x.shape[-1]
    if s >= 0:
        return F.pad(x, (s, 0), value=value)[..., :n]
    return F.pad(x, (0, -s), value=value)[..., -s:]


def _add(p: _Pair, q: _Pair) -> _Pair:
    return p[0] + q[0], None if p[1] is None else p[1] + q[1]


def _lae(p: _Pair, q: _Pair, tape: _Tape) -> _Pair:
    y = tape(lambda: torch.logaddexp(p[0], q[0]))
    if p[1] is None:
        return y, None
    return y, _wexp(p[0] - y) * p[1] + _wexp(q[0] - y) * q[1]


def _scan(p: _Pair, reverse: bool, tape: _Tape, skip: int = 0) -> _Pair:
    """Inclusive log-cumsum-exp over positions (from the right with ``reverse``) and its tangent.

    The first ``skip`` positions in scan order are impossible configurations ("log 0"): they are left out of the
    scan (exp of "log 0" underflows, which is slow on CPU) and stay "log 0". The tangent is the prefix average of
    the input tangent under the prefix softmax weights; a per-row shift makes the tangent positive so that it is
    one more log-space scan (error ~ eps * max|tangent|, as for a plain sum).
    """
    x, t = p
    if reverse:
        x = x.flip(-1)
        t = None if t is None else t.flip(-1)
    skip = min(skip, x.shape[-1] - 1)
    xs = x[..., skip:]
    ys = tape(lambda: torch.logcumsumexp(xs, dim=-1))
    y = F.pad(ys, (skip, 0), value=_neg(x.dtype))
    dy = None
    if t is not None:
        ts = t[..., skip:]
        c = 1.0 - ts.amin(-1, keepdim=True)
        dy = F.pad(_wexp(torch.logcumsumexp(xs + torch.log(ts + c), dim=-1) - ys) - c, (skip, 0))
    if reverse:
        y = y.flip(-1)
        dy = None if dy is None else dy.flip(-1)
    return y, dy


def _forward(a: Tensor, b: Tensor, k: int, ta: Tensor | None, tb: Tensor | None,
             tape: _Tape) -> tuple[_Pair, _Pair, _Pair]:
    """Marginals ``(mu_a, mu_b)`` and ``log Z`` (values and, when ``ta, tb`` are given, their tangents).

    The tape records the log-space values on the first call and replays them on later calls (tangent passes)."""
    nv = _neg(a.dtype)
    low = nv / (8 * (k + 2))
    if ta is not None:
        ta = torch.where(a > low, ta, torch.zeros_like(ta))
        tb = torch.where(b > low, tb, torch.zeros_like(tb))
    a, b = a.clamp_min(low), b.clamp_min(low)
    tan = ta is not None
    zero = torch.zeros_like(a) if tan else None
    ua: _Pair = (a, ta)
    b_before: _Pair = (F.pad(b, (1, 0)), F.pad(tb, (1, 0)) if tan else None)  # b_{i-1} at i
    b_after: _Pair = (F.pad(b, (0, 1)), F.pad(tb, (0, 1)) if tan else None)  # b_i at i

    def sh(p: _Pair, s: int) -> _Pair:
        return _shift(p[0], s, nv), _shift(p[1], s, 0.0)

    # prefix: E_1..E_k
    e_list: list[_Pair] = [ua]
    for j in range(2, k + 1):
        e = e_list[-1]  # E_{j-1}: positions before j - 2 are impossible
        g = _scan(e, reverse=False, tape=tape, skip=j - 2)
        e_list.append(_add(ua, _lae(sh(g, 2), _add(sh(e, 1), b_before), tape)))
    ek = e_list[-1]
    lz = tape(lambda: torch.logsumexp(ek[0], dim=-1, keepdim=True))
    dlz = (_wexp(ek[0] - lz) * ek[1]).sum(-1, keepdim=True) if tan else None

    # suffix: F_1..F_{k-1}, continuations S_0..S_{k-1}
    f_list: list[_Pair] = [ua]
    s_list: list[_Pair] = [(torch.zeros_like(a), zero)]
    for r in range(1, k):
        f = f_list[-1]  # F_r: the last r - 1 positions are impossible
        h = _scan(f, reverse=True, tape=tape, skip=r - 1)
        s_list.append(_lae(sh(h, -2), _add(sh(f, -1), b_after), tape))
        if r < k - 1:
            f_list.append(_add(ua, _lae(sh(h, -2), _add(sh(f, -1), b_after), tape)))

    def combine(terms: list[_Pair]) -> _Pair:
        v = torch.stack([t[0] for t in terms]) - lz
        w = _wexp(v)
        mu = w.sum(0)
        if not tan:
            return mu, None
        return mu, (w * (torch.stack([t[1] for t in terms]) - dlz)).sum(0)

    # unary: the j-th one at i, then k - j more after it
    mu_a = combine([_add(e_list[j - 1], s_list[k - j]) for j in range(1, k + 1)])
    # pairwise: the j-th one at i, the (j+1)-th at i + 1
    if k == 1 or a.shape[-1] == 1:
        mu_b = (torch.zeros_like(b), torch.zeros_like(b) if tan else None)
    else:
        pair_terms = []
        for j in range(1, k):
            left = (e_list[j - 1][0][..., :-1], None if not tan else e_list[j - 1][1][..., :-1])
            right = (f_list[k - j - 1][0][..., 1:], None if not tan else f_list[k - j - 1][1][..., 1:])
            pair_terms.append(_add(_add(left, (b, tb)), right))
        mu_b = combine(pair_terms)
    return mu_a, mu_b, (lz.squeeze(-1), None if dlz is None else dlz.squeeze(-1))


class _ChainMarginals(torch.autograd.Function):
    """Unary and pairwise marginals of the chain; backward: the tangent pass of the same recursion, replaying the
    forward's log-space values. ``setup_context`` form with a generated vmap rule (``torch.func`` transforms it):
    the forward returns the two marginals and then the recorded values (non-differentiable outputs; callers
    keep the first two)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a: Tensor, b: Tensor, k: int) -> tuple[Tensor, ...]:
        tape = _Tape()
        (mu_a, _), (mu_b, _), _ = _forward(a, b, k, None, None, tape)
        return (mu_a, mu_b, *tape.values)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor, int], output: tuple[Tensor, ...]) -> None:
        a, b, k = inputs
        ctx.mark_non_differentiable(*output[2:])
        ctx.save_for_backward(a, b, *output[2:])
        ctx.k = k

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, ga: Tensor, gb: Tensor, *_: Tensor) -> tuple[Tensor, Tensor, None]:
        a, b, *values = ctx.saved_tensors
        tape = _Tape()
        tape.values = values
        # The tangent pass is linear in (ga, gb) but its scans add a constant of order 1 to the tangents, so its
        # rounding error is ~ eps * max(1, |g|): relative to a small upstream gradient (~1e-5 in a typical loss)
        # that is large in float32. So run it on the upstream gradient scaled to max |g| = 1 per row, and scale
        # back (exact: the pass is linear).
        scale = torch.cat([ga, gb], -1).abs().amax(-1, keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        (_, da), (_, db), _ = _forward(a, b, ctx.k, (ga / scale).contiguous(), (gb / scale).contiguous(),
                                       tape.rewind())
        return da * scale, db * scale, None


def marginals(a: Tensor, b: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(E[x_i], E[x_i x_{i+1}])``: ``a`` (..., n), ``b`` (..., n-1) -> ``(..., n), (..., n-1)``.

    Differentiable in ``(a, b)`` (custom backward: the exact Hessian-vector product). Requires 1 <= k <= n.
    """
    mu_a, mu_b, *_ = _ChainMarginals.apply(a, b, static_int(k))  # a constant of a traced graph
    return mu_a, mu_b


def log_partition(a: Tensor, b: Tensor, k: int) -> Tensor:
    """``log Z``: ``(..., n), (..., n-1) -> (...)`` (values only, no gradient; for tests)."""
    with torch.no_grad():
        return _forward(a, b, k, None, None, _Tape())[2][0]


def argmax(a: Tensor, b: Tensor, k: int) -> Tensor:
    """The best configuration's unary part ``(..., n)`` 0/1 (max-plus recursion and backtracking)."""
    nv = _neg(a.dtype)
    low = nv / (8 * (k + 2))
    a, b = a.detach().clamp_min(low), b.detach().clamp_min(low)
    n = a.shape[-1]
    b_at = F.pad(b, (1, 0))
    e = a
    adjacent, far = [], []
    for _ in range(2, k + 1):
        gv, gi = torch.cummax(e, dim=-1)
        g2 = _shift(gv, 2, nv)
        e1 = _shift(e, 1, nv) + b_at
        adjacent.append(e1 >= g2)
        far.append(gi)
        e = a + torch.maximum(g2, e1)
    pos = e.argmax(-1, keepdim=True)
    chosen = [pos]
    for adj, gi in zip(reversed(adjacent), reversed(far)):
        back = gi.gather(-1, (pos - 2).clamp_min(0))
        pos = torch.where(adj.gather(-1, pos), pos - 1, back)
        chosen.append(pos)
    idx = torch.cat(chosen, -1).clamp(0, n - 1)
    return torch.zeros_like(a).scatter(-1, idx, 1.0)  # out of place: vmap has no rule for scatter_
