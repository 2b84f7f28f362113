"""Matrix-tree theorem helpers: stable edge weights and the inverse of a Laplacian with one node removed."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["stable_weights", "rooted_inverse"]


def stable_weights(theta: Tensor, valid: Tensor, max_range: float, per_column: bool = False) -> Tensor:
    """``exp(theta - max)`` on the valid entries (0 elsewhere), with theta first raised to ``max - max_range``.

    ``theta`` (..., n, n); ``valid`` (n, n) bool. The maximum is over the valid entries of each matrix (of each
    column with ``per_column``, for arborescences, whose law is unchanged by a shift of one node's incoming
    weights) and is detached (the marginals do not depend on the shift). Raising the smallest weights bounds the
    condition number of the Laplacian by about ``n * exp(max_range)``, so the solve never returns inf or NaN.
    """
    masked = theta.masked_fill(~valid, float("-inf"))
    mx = masked.detach().amax(dim=-2 if per_column else (-2, -1), keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))  # an all-invalid column (the root)
    clipped = torch.maximum(masked, mx - max_range)
    return torch.exp(clipped - mx).masked_fill(~valid, 0.0)


def rooted_inverse(lap: Tensor, root: int) -> Tensor:
    """Inverse of ``lap`` (..., n, n) with row and column ``root`` removed, embedded back with zeros there.

    Computed as the inverse of ``lap`` with row/column ``root`` replaced by the unit vector (block diagonal with a
    1 at ``root``), whose ``root`` entry is then zeroed: one batched LU inverse, differentiable by autograd.
    """
    n = lap.shape[-1]
    eye_r = torch.zeros(n, n, dtype=torch.bool, device=lap.device)
    eye_r[root, :] = True
    eye_r[:, root] = True
    unit = torch.zeros(n, n, dtype=lap.dtype, device=lap.device)
    unit[root, root] = 1.0
    m = torch.where(eye_r, unit, lap)
    inv = torch.linalg.inv_ex(m)[0]  # no error check: that would sync with the device
    return torch.where(eye_r, torch.zeros((), dtype=lap.dtype, device=lap.device), inv)
