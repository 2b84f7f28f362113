"""k-subsets (k-hot vectors): top-k argmax and four relaxations over the capped simplex."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from sst.structures import _ksubset
from sst.structures._backend import check_backend
from sst.structures._capped import capped_simplex
from sst.structures.base import Structure
from sst.validation import check_k

__all__ = ["TopK"]


class TopK(Structure):
    """k-hot vectors of length n (``1 <= k <= n``): ``w`` and ``x`` have shape ``(..., n)``.

    - argmax: ones at the k largest entries of ``w`` (``torch.topk``; ties broken by its order);
    - ``exp_family_entropy`` (default): the marginals of ``p(x) ∝ exp(<w, x> / tau)`` over k-hot x, i.e. the
      gradient of ``log sum_{|S|=k} exp(sum_S w / tau)`` (see :mod:`sst.structures._ksubset`: m cumulative sums
      in a shifted linear space, exact gradients; on CPU with numba installed, the same recursions compiled);
    - ``euclidean``: projection of ``w / tau`` onto ``{0 <= x <= 1, sum x = k}``;
    - ``categorical_entropy``: ``min(1, exp((w - nu) / tau))``; ``binary_entropy``: ``sigmoid((w - nu) / tau)``;
      nu by bisection so that ``sum x = k``, gradients by implicit differentiation (:mod:`sst.structures._capped`).

    ``backend`` chooses the ``exp_family_entropy`` implementation: ``"auto"`` (numba kernels for CPU tensors
    when numba is installed, else PyTorch), ``"torch"`` or ``"numba"``; they agree to float rounding.
    """

    regularizers = ("exp_family_entropy", "euclidean", "categorical_entropy", "binary_entropy")
    event_ndim = 1

    def __init__(self, k: int, backend: str = "auto") -> None:
        self.k = check_k(k)
        self.backend = check_backend(backend)

    def __repr__(self) -> str:
        return f"TopK(k={self.k})"

    def _check_shape(self, w: Tensor, name: str = "w") -> None:
        super()._check_shape(w, name)
        n = w.shape[-1]
        if self.k > n:
            raise ValueError(f"k={self.k} must be <= n, the last dimension of {name}, which is {n}")

    def _argmax(self, w: Tensor) -> Tensor:
        idx = torch.topk(w, self.k, dim=-1).indices
        return torch.zeros_like(w).scatter_(-1, idx, 1.0)

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        z = w / tau
        if regularizer == "exp_family_entropy":
            return _ksubset.marginals(z, self.k, self.backend)
        return capped_simplex(z, self.k, regularizer)

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """All ``C(n, k)`` k-hot vectors of length n: ``(C(n, k), n)``."""
        n = int(n)
        check_k(self.k, n)
        rows = []
        for subset in itertools.combinations(range(n), self.k):
            row = [0.0] * n
            for i in subset:
                row[i] = 1.0
            rows.append(row)
        return torch.tensor(rows, dtype=dtype or torch.get_default_dtype(), device=device).reshape(len(rows), n)
