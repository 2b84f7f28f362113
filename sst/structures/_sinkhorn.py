"""Log-space Sinkhorn with implicit-function-theorem gradients.

Forward: ``P = exp(S + f 1^T + 1 g^T)`` with f, g the row and column potentials that make P doubly stochastic,
by alternating log-space normalisations (with epsilon-scaling for scores of large spread) until the row sums are
within ``tol`` of 1 (columns are exact after each sweep), checked every ``check_every`` sweeps (one host sync per
check, plus one to size the epsilon-scaling schedule), at most ``max_iter`` sweeps.

Backward (exact at the fixed point; Luise et al. 2018 / Eisenberger et al. 2022): for an upstream gradient G,
with ``a = (G ⊙ P) 1`` and ``b = (G ⊙ P)^T 1``, solve ``y + P z = a``, ``P^T y + z = b`` (the gauge is fixed by
adding ``1 1^T / n``, which leaves the solution unchanged), then ``dS = P ⊙ (G - y 1^T - 1 z^T)``. A ridge of
100 machine epsilons keeps the system solvable when P is (numerically) a permutation matrix, where the exact
Jacobian is 0 and the ridge solution tends to it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sinkhorn"]


def _sweeps(s: Tensor, f: Tensor, g: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    for _ in range(iters):
        f = -torch.logsumexp(s + g, dim=-1, keepdim=True)
        g = -torch.logsumexp(s + f, dim=-2, keepdim=True)
    return f, g


def _solve_potentials(s: Tensor, tol: float, max_iter: int, check_every: int) -> tuple[Tensor, Tensor]:
    """Row and column potentials by log-space Sinkhorn with epsilon-scaling.

    Scores with a large spread (small temperatures) are first solved at scaled-down scores ``s / 4^t`` (20 sweeps
    per stage, potentials scaled up by 4 between stages, no host sync), then at ``s`` until converged.
    """
    spread = (s.amax(dim=(-2, -1)) - s.amin(dim=(-2, -1))).amax()
    stages = int(torch.clamp(torch.log(spread.clamp_min(1.0)) / torch.log(torch.tensor(4.0)), max=30).ceil())
    f = torch.zeros_like(s[..., :, :1])
    g = torch.zeros_like(s[..., :1, :])
    for t in range(stages, 0, -1):
        f, g = _sweeps(s / 4.0**t, f, g, 20)
        f, g = 4 * f, 4 * g
    for it in range(0, max_iter, check_every):
        f, g = _sweeps(s, f, g, min(check_every, max_iter - it))
        err = (torch.exp(s + f + g).sum(-1) - 1).abs().amax()
        if float(err) <= tol:
            break
    return f, g


class _Sinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s: Tensor, tol: float, max_iter: int, check_every: int) -> Tensor:
        f, g = _solve_potentials(s, tol, max_iter, check_every)
        p = torch.exp(s + f + g)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (p,) = ctx.saved_tensors
        n = p.shape[-1]
        gp = grad * p
        a = gp.sum(-1)  # (..., n)
        b = gp.sum(-2)
        pt = p.transpose(-1, -2)
        eye = torch.eye(n, dtype=p.dtype, device=p.device)
        ridge = 100 * torch.finfo(p.dtype).eps  # P near a permutation makes I - P^T P singular (zero Jacobian)
        lhs = (1 + ridge) * eye - pt @ p + 1.0 / n
        rhs = b - (pt @ a.unsqueeze(-1)).squeeze(-1)
        z = torch.linalg.solve_ex(lhs, rhs.unsqueeze(-1))[0].squeeze(-1)
        y = a - (p @ z.unsqueeze(-1)).squeeze(-1)
        return p * (grad - y.unsqueeze(-1) - z.unsqueeze(-2)), None, None, None


def sinkhorn(s: Tensor, tol: float | None = None, max_iter: int = 2000, check_every: int = 10) -> Tensor:
    """Doubly stochastic ``exp(s + f 1^T + 1 g^T)`` for scores ``s`` (..., n, n); differentiable (implicit).

    ``tol`` defaults to ``1e-10`` in float64 and ``1e-5`` otherwise.
    """
    if tol is None:
        tol = 1e-10 if s.dtype == torch.float64 else 1e-5
    return _Sinkhorn.apply(s, float(tol), int(max_iter), int(check_every))
