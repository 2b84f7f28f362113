"""One-hot vectors: the Gumbel-max trick (argmax) and the Gumbel-softmax / sparsemax relaxations."""

from __future__ import annotations

import torch
from torch import Tensor

from sst.structures.base import Structure
from sst.validation import checks_enabled

__all__ = ["Categorical", "sparsemax"]


def sparsemax(z: Tensor) -> Tensor:
    """Euclidean projection of ``z`` onto the probability simplex, over the last dim: ``(..., n) -> (..., n)``.

    Sort-based and exact (Martins & Astudillo 2016); autograd through the sorted values gives the exact
    Jacobian ``diag(s) - s s^T / |s|`` (s the support indicator).
    """
    zs, _ = torch.sort(z, dim=-1, descending=True)
    cs = zs.cumsum(-1)
    r = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    support = (1 + r * zs) > cs  # a prefix of the sorted entries, never empty
    size = support.sum(-1, keepdim=True)
    thr = (cs.gather(-1, size - 1) - 1) / size.to(z.dtype)
    return torch.clamp(z - thr, min=0)


class Categorical(Structure):
    """One-hot vectors of length n: ``w`` and ``x`` have shape ``(..., n)``.

    - argmax: one-hot of ``argmax(w)`` (ties: the first index);
    - ``entropy`` (default): ``softmax(w / tau)``; ``euclidean``: ``sparsemax(w / tau)``.

    ``-inf`` weights mean "never selected" (0 in every output, gradient 0); each row needs a finite entry.
    """

    regularizers = ("entropy", "euclidean")
    event_ndim = 1
    allows_neg_inf = True
    kind = "Categorical"

    def exact_log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        """``<x, log_softmax(theta)>``: the Gumbel-max sample's law (``(..., n), (..., n) -> (...)``)."""
        return (x * torch.log_softmax(theta, -1)).sum(-1)

    def exact_mean(self, theta: Tensor) -> Tensor:
        """``softmax(theta)``."""
        return torch.softmax(theta, -1)

    def _check(self, w: Tensor, name: str = "w") -> None:
        super()._check(w, name)
        if checks_enabled() and bool(torch.isneginf(w).all(-1).any()):
            raise ValueError(f"{name} has a row whose entries are all -inf; a category needs a finite weight")

    def _argmax(self, w: Tensor) -> Tensor:
        idx = w.argmax(-1, keepdim=True)
        return torch.zeros_like(w).scatter(-1, idx, 1.0)  # out of place: vmap has no rule for scatter_

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        z = w / tau
        if regularizer == "entropy":
            return torch.softmax(z, dim=-1)
        return sparsemax(z)

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """The n one-hot vectors: ``(n, n)``."""
        return torch.eye(int(n), dtype=dtype or torch.get_default_dtype(), device=device)
