"""Batched maximum-weight perfect assignment in PyTorch: the shortest augmenting path Hungarian algorithm.

The algorithm of ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant style shortest augmenting paths with
dual potentials, Crouse 2016), exact (no epsilon), O(n^3) per matrix, vectorised over the batch: row ``k`` of every
matrix is inserted in one round of at most ``k + 1`` Dijkstra steps, each a handful of tensor operations on
``(B, n)`` tensors; the augmentation along the found path is marked by pointer doubling (``ceil(log2(k + 2))``
gathers) instead of a walk. Every loop has a fixed length that depends on ``n`` only, so on a device the solve issues
no host sync (``sync_free=True``); on the CPU a round stops as soon as every matrix of the batch has found its path
(``sync_free=False``, one cheap ``.item()``-like check per step).

The arithmetic is float64 whatever the input dtype (as SciPy's), so the maximiser is exact for float64 weights up
to the rounding of the potentials, as SciPy's is.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["max_assignment"]

_HUGE = 1e300  # what NaN / +-inf become (as the SciPy path's np.nan_to_num)


def _float64_costs(w: Tensor) -> Tensor:
    """``w`` (B, n, n) as float64 minimisation costs ``-w``, NaN/inf mapped to finite values and, where
    ``max |w|`` exceeds 2^1000, scaled by a power of two (exact) so that sums of ``n`` potentials cannot overflow."""
    c = torch.nan_to_num(w.to(torch.float64), nan=-_HUGE, posinf=_HUGE, neginf=-_HUGE)
    top = c.abs().amax(dim=(-2, -1), keepdim=True)
    shift = (torch.frexp(top).exponent - 1000).clamp(min=0)
    return -torch.ldexp(c, -shift.to(torch.float64))


def max_assignment(w: Tensor, sync_free: bool | None = None) -> Tensor:
    """The assignment maximising ``sum_i w[..., i, cols[i]]`` over permutations ``cols``: ``(..., n, n) -> (..., n)``.

    Args:
        w: (..., n, n) floating weights (any dtype and device; solved in float64 on ``w``'s device).
        sync_free: True: fixed-length loops only (no host sync; the device default). False: stop each round's
            search once every matrix has found its augmenting path (one host check per step; the CPU default).

    Returns:
        cols: (..., n) long on ``w``'s device, a permutation of ``0..n-1`` per matrix (row i -> column cols[i]).
    """
    if w.dim() < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"w must have shape (..., n, n), got {tuple(w.shape)}")
    if sync_free is None:
        sync_free = w.device.type != "cpu"
    n = w.shape[-1]
    batch = w.shape[:-2]
    dev = w.device
    if w.numel() == 0 or n == 1:
        return torch.zeros((*batch, n), dtype=torch.long, device=dev)
    cost = _float64_costs(w.reshape(-1, n, n))
    b = cost.shape[0]
    f64 = dict(dtype=torch.float64, device=dev)
    rows = torch.arange(b, device=dev)
    # index n is a dummy row and a dummy column (cost +inf): a matrix whose search is over sits on the dummy row
    # and selects the dummy column, so its state stays put without masks
    cost_ext = torch.full((b, n + 1, n + 1), float("inf"), **f64)
    cost_ext[:, :n, :n] = cost
    u = torch.zeros(b, n, **f64)  # row potentials
    v = torch.zeros(b, n + 1, **f64)  # column potentials (v[:, n] = 0)
    col4row = torch.full((b, n), n, dtype=torch.long, device=dev)  # n: unassigned
    row4col = torch.full((b, n + 1), n, dtype=torch.long, device=dev)  # row4col[:, n] = n always
    dummy = torch.full((b, 1), n, dtype=torch.long, device=dev)
    not_dummy = torch.arange(n + 1, device=dev) < n
    inf = torch.tensor(float("inf"), **f64)
    offset = rows * (n + 1)
    for cur in range(n):
        cu_rows = (cost_ext - torch.nn.functional.pad(u, (0, 1))[:, :, None]).reshape(b * (n + 1), n + 1)
        free = (row4col == n) & not_dummy
        key = torch.full((b, n + 1), float("inf"), **f64)  # tentative path costs of the unscanned columns, else inf
        dist = torch.zeros(b, n + 1, **f64)  # the path costs of the scanned columns
        vp = -v  # -v, and +inf on the columns already scanned (and the dummy)
        vp[:, n] = float("inf")
        path = torch.full((b, n + 1), cur, dtype=torch.long, device=dev)  # the row each column is reached from
        min_val = torch.zeros(b, **f64)
        i = torch.full((b,), cur, dtype=torch.long, device=dev)
        for _ in range(cur + 1):  # cur columns are assigned: the search ends at a free one within cur + 1 steps
            r = cu_rows.index_select(0, offset + i) + (min_val[:, None] + vp)  # min_val + cost - u_i - v
            better = r < key
            key = torch.where(better, r, key)
            path = torch.where(better, i[:, None], path)
            low, j = key.min(dim=-1)
            over = i == n
            j = torch.where(over, n, j)
            min_val = torch.where(over, min_val, low)
            key.index_put_((rows, j), inf)
            vp.index_put_((rows, j), inf)
            dist.index_put_((rows, j), low)
            i = row4col.gather(1, j[:, None]).squeeze(1)  # n once a free column is reached
            if not sync_free and bool((i == n).all()):
                break
        seen = vp[:, :n] == inf
        sink = (seen & free[:, :n]).to(torch.uint8).argmax(dim=-1)
        # dual update: the potentials stay feasible and the path's edges become tight
        row_dist = torch.where(col4row == n, 0.0, dist.gather(1, col4row))  # 0 for row cur
        row_seen = torch.nn.functional.pad(seen, (0, 1)).gather(1, col4row)
        row_seen[:, cur] = True
        u = u + torch.where(row_seen, min_val[:, None] - row_dist, 0.0)
        v[:, :n] -= torch.where(seen, min_val[:, None] - dist[:, :n], 0.0)
        # augment along sink <- path[sink] <- its column <- ... <- cur: the scanned columns form a tree whose parent
        # of column j is the column of row path[j] (n for row cur); mark the ancestors of sink by doubling
        parent = torch.cat([col4row, dummy], dim=1).gather(1, path)
        chain = torch.zeros(b, n + 1, dtype=torch.bool, device=dev)
        chain[rows, sink] = True
        for _ in range(max(1, (cur + 1).bit_length())):  # the chain has at most cur + 1 columns
            hit = torch.zeros(b, n + 1, dtype=torch.int32, device=dev).scatter_add_(1, parent, chain.to(torch.int32))
            chain = chain | (hit > 0)
            parent = parent.gather(1, parent)
        row4col = torch.where(chain & not_dummy, path, row4col)
        col4row = torch.full((b, n + 1), n, dtype=torch.long, device=dev).scatter_(
            1, row4col, torch.arange(n + 1, device=dev).expand(b, n + 1))[:, :n]
    return col4row.reshape(*batch, n)
