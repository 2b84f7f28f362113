"""Correlated k-subsets of a chain: k-hot vectors with pairwise terms between neighbours (L2X)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from sst.structures import _chain
from sst.structures._masking import check_mask, subset_plan
from sst.structures.base import Structure
from sst.validation import check_k, static_int

__all__ = ["CorrelatedTopK", "LOG_ZERO"]

# "log 0" for the chain: finite (so ``w / tau`` stays finite for tau >= 1e-6 in float32), far below any real
# score, and ``logaddexp(LOG_ZERO, x) == x`` exactly, so a position weighted with it is in no subset's sum.
LOG_ZERO = -1.0e32


class CorrelatedTopK(Structure):
    """k-subsets of n chain positions with a bonus for adjacent pairs.

    ``w`` and ``x`` have shape (..., 2n - 1): the n unary entries, then the n - 1 pairwise entries of the
    neighbouring pairs (i, i + 1); a vertex x is k-hot in its unary part and ``x[n + i] = x[i] * x[i + 1]``.
    The score is ``<w, x> = sum_i w_i x_i + sum_i w_{n+i} x_i x_{i+1}``.

    - argmax: max-plus dynamic programme over the number of ones, with backtracking (:mod:`sst.structures._chain`);
    - ``exp_family_entropy``: unary and pairwise marginals of ``p(x) ∝ exp(<w, x> / tau)``, the gradient of the
      log-partition computed by the same recursion in the log semiring (k steps, each an O(log n) scan), exact
      autograd.

    Variable-length chains (padded batches): ``S.masked(w, mask)`` takes the padding out of the chain exactly,
    e.g. ``sst.sample(S, S.masked(w, mask))``.
    """

    regularizers = ("exp_family_entropy",)
    event_ndim = 1
    kind = "CorrelatedTopK"

    def __init__(self, k: int) -> None:
        self.k = check_k(k)

    def __repr__(self) -> str:
        return f"CorrelatedTopK(k={self.k})"

    def _check_shape(self, w: Tensor, name: str = "w") -> None:
        super()._check_shape(w, name)
        size = w.shape[-1]
        if size % 2 == 0:
            raise ValueError(f"the last dimension of {name} must be 2n - 1 (n unary then n - 1 pairwise entries), "
                             f"got {size}")
        n = (size + 1) // 2
        if static_int(self.k) > n:  # static_int: k a constant of a traced graph
            raise ValueError(f"k={self.k} must be <= n={n}, the number of chain positions ({name} has last "
                             f"dimension 2n - 1 = {size})")

    def _split(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Unary (..., n) and pairwise (..., n - 1) parts; the unary part shifted by the mean of its k largest.

        Every vertex has exactly k ones, so a per-row shift of the unary part changes every score by the same
        amount and neither the argmax nor the marginals. The log-space recursion's rounding error grows with the
        size of its values (a float32 ulp is 1e-3 at 1e4); with this shift the likely configurations' partial
        scores stay near 0 (against the row maximum: 6 to 20 times smaller float32 errors at logit scales 30 to
        1500, `results/bench/chain_backward_precision.json`)."""
        n = (w.shape[-1] + 1) // 2
        a = w[..., :n]
        return a - a.detach().topk(self.k, dim=-1).values.mean(-1, keepdim=True), w[..., n:]

    def masked(self, w: Tensor, mask: Tensor) -> Tensor:
        """``w`` with the chain positions where ``mask`` is False taken out of every subset, exactly.

        A large negative weight is not enough for the chain: pairwise weights far below zero can make two
        masked positions pay for themselves. Here a masked position gets the unary weight :data:`LOG_ZERO`, so
        no subset selects it at any scale of ``w`` and its terms are exactly 0 in the log-space recursion, in
        float32 too. A row with fewer than k allowed positions cannot hold a k-subset of them; there the first
        ``k - count`` masked positions stay in as fillers (read the result through ``mask``). A row with at most
        k allowed positions has a single subset whatever its weights, so its weights are replaced by zeros:
        marginals 1 on the subset (to float rounding once noise is added), gradient exactly 0. Otherwise
        gradients reach ``w`` at the allowed positions and at every pairwise entry.

        Args:
            w: (..., 2n - 1) weights (n unary, then n - 1 pairwise entries).
            mask: (..., n) bool, True where the position may be selected.

        Returns:
            (..., 2n - 1) weights to pass to ``argmax``, ``relax`` or :func:`sst.sample`; float16 and bfloat16
            weights come back as float32 (:data:`LOG_ZERO` needs its range; ``relax`` computes half inputs in
            float32 anyway).
        """
        self._check_shape(w)
        n = (w.shape[-1] + 1) // 2
        check_mask(mask, w, n, "chain positions")
        if w.dtype in (torch.float16, torch.bfloat16):
            w = w.float()
        a, b = w[..., :n], w[..., n:]
        keep, single = subset_plan(mask, self.k)
        # at most k allowed positions: one feasible subset, whatever the weights; zero weights give its
        # marginals (and their zero gradient) exactly, where large ones would leave float32 rounding in them
        a = torch.where(single, torch.zeros_like(a), a).masked_fill(~keep, LOG_ZERO)
        b = torch.where(single, torch.zeros_like(b), b)
        return torch.cat([a, b], dim=-1)

    def _pairs(self, unary: Tensor) -> Tensor:
        return torch.cat([unary, unary[..., :-1] * unary[..., 1:]], dim=-1)

    def _argmax(self, w: Tensor) -> Tensor:
        a, b = self._split(w)
        return self._pairs(_chain.argmax(a, b, self.k))

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        a, b = self._split(w / tau)
        mu_a, mu_b = _chain.marginals(a, b, self.k)
        return torch.cat([mu_a, mu_b], dim=-1)

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """All ``C(n, k)`` vertices: ``(C(n, k), 2n - 1)`` (k-hot unary part, then the adjacent products)."""
        n = int(n)
        check_k(self.k, n)
        rows = []
        for subset in itertools.combinations(range(n), self.k):
            u = [0.0] * n
            for i in subset:
                u[i] = 1.0
            rows.append(u + [u[i] * u[i + 1] for i in range(n - 1)])
        return torch.tensor(rows, dtype=dtype or torch.get_default_dtype(), device=device).reshape(len(rows), 2 * n - 1)
