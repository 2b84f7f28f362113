"""k-subsets (k-hot vectors): top-k argmax and four relaxations over the capped simplex."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from sst.structures import _ksubset
from sst.structures._backend import check_backend
from sst.structures._capped import capped_simplex
from sst.structures._masking import check_mask, subset_plan
from sst.structures.base import Structure
from sst.validation import check_floating, check_k, check_weights, checks_enabled, static_int

__all__ = ["MASK_GAP", "TopK"]

# How far below a row's smallest allowed weight ``TopK.masked`` puts the masked positions: exp(-MASK_GAP / tau)
# and sigmoid(-MASK_GAP / tau) underflow in float32 and float64 for every tau <= 1e3, Gumbel noise (|G| < 50)
# cannot close the gap, and the capped-simplex bisection (float64, 60 halvings, then an exact polish) still
# brackets nu finely.
MASK_GAP = 1.0e6


class TopK(Structure):
    """k-hot vectors of length n (``1 <= k <= n``): ``w`` and ``x`` have shape ``(..., n)``.

    - argmax: ones at the k largest entries of ``w`` (``torch.topk``; ties broken by its order);
    - ``exp_family_entropy`` (default): the marginals of ``p(x) ∝ exp(<w, x> / tau)`` over k-hot x, i.e. the
      gradient of ``log sum_{|S|=k} exp(sum_S w / tau)`` (see :mod:`sst.structures._ksubset`: m cumulative sums
      in a shifted linear space, exact gradients; on CPU with numba installed, the same recursions compiled);
    - ``euclidean``: projection of ``w / tau`` onto ``{0 <= x <= 1, sum x = k}``;
    - ``categorical_entropy``: ``min(1, exp((w - nu) / tau))``; ``binary_entropy``: ``sigmoid((w - nu) / tau)``;
      nu by bisection so that ``sum x = k``, gradients by implicit differentiation (:mod:`sst.structures._capped`).

    Variable-length rows (padded batches): ``S.masked(w, mask)`` keeps the masked positions out of every subset
    and out of every relaxation, e.g. ``sst.sample(S, S.masked(w, mask))``.

    ``-inf`` weights mean "never selected" (0 in every output, gradient 0, never in a top-k); each row needs at
    least k finite entries (ValueError otherwise, with checks on).

    ``backend`` chooses the ``exp_family_entropy`` implementation: ``"auto"`` (numba kernels for CPU tensors
    when numba is installed, else PyTorch), ``"torch"`` or ``"numba"``; they agree to float rounding.
    """

    regularizers = ("exp_family_entropy", "euclidean", "categorical_entropy", "binary_entropy")
    event_ndim = 1
    kind = "TopK"

    allows_neg_inf = True

    def __init__(self, k: int, backend: str = "auto") -> None:
        self.k = check_k(k)
        self.backend = check_backend(backend)

    def __repr__(self) -> str:
        return f"TopK(k={self.k})"

    def _check_shape(self, w: Tensor, name: str = "w") -> None:
        super()._check_shape(w, name)
        n = w.shape[-1]
        if static_int(self.k) > n:  # static_int: k a constant of a traced graph
            raise ValueError(f"k={self.k} must be <= n, the last dimension of {name}, which is {n}")

    def _check(self, w: Tensor, name: str = "w") -> None:
        self._check_shape(w, name)
        check_floating(w, name)
        if not checks_enabled():
            return
        # one host sync: NaN or +inf in a row (its maximum is not < inf), or fewer than k entries > -inf (finite,
        # given the first); only then the full check, for its message
        inf = float("inf")
        if not bool((((w > -inf).sum(-1) < self.k) | ~(w.amax(-1) < inf)).any()):
            return
        few = (torch.isfinite(w).sum(-1) < self.k, f"{name} has a row with fewer than k={self.k} finite entries "
               f"(-inf means 'never selected', so no k-subset exists there); use TopK.masked for padded rows")
        check_weights(w, name, allow_neg_inf=self.allows_neg_inf, extra=few)

    def masked(self, w: Tensor, mask: Tensor) -> Tensor:
        """``w`` with the positions where ``mask`` is False taken out of every subset.

        A masked position gets the row's smallest allowed weight minus :data:`MASK_GAP` (1e6), so a hard top-k
        (with or without Gumbel noise) never picks it and every relaxation gives it 0 for tau <= 1e3, at any
        scale of ``w`` (a fixed "very negative" logit fails once the real logits drift below it): exactly 0 for
        the capped-simplex regularizers, below 1e-34 (float32) or 1e-300 (float64) for ``exp_family_entropy``,
        whose weights are clipped at exp(-80) / exp(-700) for speed; its gradient is exactly 0.

        A row with fewer than k allowed positions cannot hold a k-subset of them; there the first
        ``k - count`` masked positions stay in as fillers (read the result through ``mask``). A row with at most
        k allowed positions has a single subset whatever its weights, so its weights are replaced by zeros (kept
        positions) and ``-MASK_GAP`` (the others): marginals 1 and 0 (to float rounding once noise is added),
        gradient exactly 0. Otherwise gradients reach ``w`` at the allowed positions only.

        Args:
            w: (..., n) weights.
            mask: (..., n) bool, True where the position may be selected.

        Returns:
            (..., n) weights to pass to ``argmax``, ``relax`` or :func:`sst.sample`; float16 and bfloat16 weights
            come back as float32 (the gap needs its range; ``relax`` computes half inputs in float32 anyway).
        """
        self._check_shape(w)
        check_mask(mask, w, w.shape[-1], "items")
        if w.dtype in (torch.float16, torch.bfloat16):
            w = w.float()
        keep, single = subset_plan(mask, self.k)
        w = torch.where(single, torch.zeros_like(w), w)
        low = w.detach().masked_fill(~mask, float("inf")).amin(-1, keepdim=True)
        low = torch.where(single, torch.zeros_like(low), low)  # also every row without an allowed position
        return torch.where(keep, w, low - MASK_GAP)

    def _argmax(self, w: Tensor) -> Tensor:
        idx = torch.topk(w, self.k, dim=-1).indices
        return torch.zeros_like(w).scatter(-1, idx, 1.0)  # out of place: vmap has no rule for scatter_

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        if regularizer == "exp_family_entropy":  # reads -inf itself (the compiled kernels at no extra cost)
            return _ksubset.marginals(w / tau, self.k, self.backend)
        # -inf ("never selected"): MASK_GAP below the row's smallest finite weight for the solvers (as in masked),
        # then exactly 0 (no host sync: done for every input)
        never = torch.isneginf(w)
        low = w.detach().masked_fill(never, float("inf")).amin(-1, keepdim=True)
        low = torch.where(torch.isfinite(low), low, torch.zeros_like(low))
        x = capped_simplex(torch.where(never, low - MASK_GAP, w) / tau, self.k, regularizer)
        return torch.where(never, torch.zeros((), dtype=x.dtype, device=x.device), x)

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
