"""Shared pieces of the ``masked`` methods of the subset structures (padded batches of variable length).

A row of n positions has a mask (True: the position may be selected). A k-subset of a row with fewer than k
allowed positions does not exist; such a row keeps its first ``k - count`` masked positions in as fillers. A row
with at most k allowed positions has a single feasible subset whatever its weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_mask", "subset_plan"]


def check_mask(mask: object, w: Tensor, n: int, what: str) -> None:
    """``mask`` must be a bool tensor of shape ``w.shape[:-1] + (n,)`` on ``w``'s device (ValueError otherwise).

    ``what`` names the n positions in the message (e.g. ``"items"``)."""
    shape = tuple(w.shape[:-1]) + (n,)
    if (not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape
            or mask.device != w.device):
        got = (f"{mask.dtype} of shape {tuple(mask.shape)} on {mask.device}" if isinstance(mask, Tensor)
               else type(mask).__name__)
        raise ValueError(f"mask must be a bool tensor of shape {shape} (w's batch shape, then n = {n} {what}) "
                         f"on w's device {w.device}, got {got}")


def subset_plan(mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Which positions a k-subset may use, and which rows have a single feasible subset.

    Args:
        mask: (..., n) bool, True where a position may be selected.
        k: the subset size.

    Returns:
        keep: (..., n) bool, the allowed positions plus, in a row with fewer than k of them, the first
        ``k - count`` masked positions (fillers); single: (..., 1) bool, True where a row has at most k allowed
        positions (its only subset is its kept positions).
    """
    count = mask.sum(-1, keepdim=True)
    rank = torch.cumsum(~mask, -1)  # 1-based rank of each masked position among the masked ones
    keep = mask | (rank <= k - count)
    return keep, count <= k
