"""Earlier relaxations of k-subset sampling, the baselines of the paper's L2X table.

The first two take selection logits ``theta`` of shape (..., n) and return relaxed k-hot vectors of shape (..., n) with
entries in [0, 1], differentiable in ``theta``:

- :func:`l2x_subset` (Chen et al. 2018, "Learning to Explain"): k independent Gumbel-softmax draws over the n
  items at temperature ``tau``, combined by an elementwise max. Its sum lies in [1, k] (< k when draws overlap).
- :func:`softsub_subset` (Xie & Ermon 2019, "Reparameterizable subset sampling via continuous relaxations"):
  perturb once with Gumbel noise, then k successive softmaxes at temperature ``tau``; before each step the
  perturbed logits are down-weighted by ``log(1 - p)`` of the previous step's softmax ``p``, so chosen mass is
  not chosen again. The output is the sum of the k softmaxes, so it sums to exactly k (entries can exceed 1
  only in degenerate cases; they are not clipped, as in the original).

``mask`` (..., n) bool marks the items that may be selected (False = padding): those get exactly 0 in the
relaxed output and are never chosen by ``hard=True`` while at least k items are allowed. Nothing returns NaN or
inf for finite ``theta``, even when whole rows are masked.

``hard=True`` returns the exact k-hot vector of the k largest relaxed entries in the forward pass, with the
relaxed gradient in the backward pass (straight-through). The test-time (mode) selection for both baselines is
the plain top-k of ``theta``, i.e. ``sst.TopK(k).argmax(theta)``.

:func:`ef_topk_fd_subset` is not an earlier method but an earlier *implementation*: the exponential-family
top-k relaxation as the paper's released code computes it (``core/topk.py``, ``SoftTopK``): exact marginals
forward, and backward the central finite difference ``(mu(t + eps g) - mu(t - eps g)) / (2 eps)`` along the
upstream gradient ``g`` (eps = 1e-2 there), which is exact only as ``eps |g| -> 0``. It is here to measure what
that gradient costs; ``sst.TopK(k).relax`` is the exact version of the same relaxation.

Noise comes from ``sst.noise.gumbel_like`` (the library's Gumbel sampler, never inf or NaN).

As structures, so that :func:`sst.sample` and the ``relaxed`` / ``straight_through`` estimators draw them like any
other relaxation: :class:`SubsetSampler` (a ``TopK`` whose relaxed sample is one of the three functions above, its
mask bound with :meth:`SubsetSampler.with_mask`) and :class:`FiniteDifferenceTopK` (a ``TopK`` whose
exp-family relaxation has the finite-difference backward, with no mask: ``relax(perturb(theta))``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sst.noise import gumbel_like
from sst.sample import straight_through
from sst.structures.topk import TopK

__all__ = ["SUBSET_METHODS", "FiniteDifferenceTopK", "SubsetSampler", "ef_topk_fd_subset", "l2x_subset",
           "softsub_subset"]


def _check(theta: Tensor, k: int, tau: float, mask: Tensor | None) -> None:
    if theta.dim() < 1:
        raise ValueError("theta must have shape (..., n), got a scalar")
    n = theta.shape[-1]
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if torch.isnan(theta).any():
        raise ValueError("theta contains NaN")
    if mask is not None and mask.shape != theta.shape:
        raise ValueError(f"mask must have theta's shape {tuple(theta.shape)}, got {tuple(mask.shape)}")


def _masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """softmax over the last dim, exactly 0 where mask is False (uniform if a row is fully masked)."""
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


def _perturb(theta: Tensor, generator: torch.Generator | None) -> Tensor:
    return theta + gumbel_like(theta, generator=generator)


def _straight_through(soft: Tensor, k: int, mask: Tensor | None) -> Tensor:
    """k-hot of the k largest entries of ``soft`` forward, ``soft``'s gradient backward. Masked items rank below
    every allowed one, also below allowed entries that are exactly 0 (at a low temperature a relaxed entry can
    underflow to 0, and a plain top-k would then break the tie among zeros with padding)."""
    key = soft.detach()
    if mask is not None:
        key = key.masked_fill(~mask, -1.0)
    idx = key.topk(k, dim=-1).indices
    return straight_through(torch.zeros_like(soft).scatter_(-1, idx, 1.0), soft)


def l2x_subset(theta: Tensor, k: int, tau: float = 0.1, mask: Tensor | None = None, hard: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
    """L2X's relaxed k-subset: max over k independent Gumbel-softmax(theta, tau) draws.

    Args:
        theta: logits (..., n).
        k: subset size, 1 <= k <= n.
        tau: temperature (> 0); 0.1 in Chen et al. and in the paper's table.
        mask: optional (..., n) bool, False = never selected.
        hard: straight-through k-hot forward pass.
        generator: torch.Generator for the Gumbel noise.

    Returns:
        (..., n) tensor in [0, 1] with sum in [1, k] (exactly k-hot when ``hard``).
    """
    _check(theta, k, tau, mask)
    draws = theta.unsqueeze(-2).expand(*theta.shape[:-1], int(k), theta.shape[-1])
    u = _perturb(draws, generator)  # (..., k, n): k independent Gumbel perturbations
    m = None if mask is None else mask.unsqueeze(-2).expand_as(u)
    soft = _masked_softmax(u / tau, m).amax(dim=-2)
    return _straight_through(soft, int(k), mask) if hard else soft


def softsub_subset(theta: Tensor, k: int, tau: float = 0.5, mask: Tensor | None = None, hard: bool = False,
                   generator: torch.Generator | None = None, eps: float = 1e-20) -> Tensor:
    """SoftSub (Xie & Ermon 2019): k successive relaxed softmaxes of the Gumbel-perturbed logits.

    ``w_0 = theta + G``; for j = 1..k: ``w_j = w_{j-1} + log(max(1 - p_{j-1}, eps))`` (``p_0 = 0``),
    ``p_j = softmax(w_j / tau)``; output ``sum_j p_j``.

    Args:
        theta: logits (..., n).
        k: subset size, 1 <= k <= n.
        tau: temperature (> 0); 0.5 in the paper's table.
        mask: optional (..., n) bool, False = never selected.
        hard: straight-through k-hot forward pass.
        generator: torch.Generator for the Gumbel noise.
        eps: floor of ``1 - p`` inside the log (Xie & Ermon's EPSILON), keeps everything finite.

    Returns:
        (..., n) tensor, entries >= 0, summing to k (exactly k-hot when ``hard``).
    """
    _check(theta, k, tau, mask)
    w = _perturb(theta, generator)
    p = torch.zeros_like(w)
    total = torch.zeros_like(w)
    for _ in range(int(k)):
        w = w + torch.log(torch.clamp(1.0 - p, min=eps))
        p = _masked_softmax(w / tau, mask)
        total = total + p
    return _straight_through(total, int(k), mask) if hard else total


def _ef_marginals(theta: Tensor, k: int) -> Tensor:
    with torch.no_grad():
        return TopK(k).relax(theta, tau=1.0, regularizer="exp_family_entropy")


class _FiniteDifferenceMarginals(torch.autograd.Function):
    """Exact k-subset marginals (..., n); backward by central finite differences along the upstream gradient."""

    @staticmethod
    def forward(ctx, theta: Tensor, k: int, eps: float) -> Tensor:
        ctx.save_for_backward(theta)
        ctx.k, ctx.eps = k, eps
        return _ef_marginals(theta, k)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:
        (theta,) = ctx.saved_tensors
        step = ctx.eps * g
        diff = _ef_marginals(theta + step, ctx.k) - _ef_marginals(theta - step, ctx.k)
        return diff / (2.0 * ctx.eps), None, None


def ef_topk_fd_subset(theta: Tensor, k: int, tau: float = 1.0, mask: Tensor | None = None, hard: bool = False,
                      generator: torch.Generator | None = None, eps: float = 1e-2) -> Tensor:
    """E.F. entropy top-k relaxation with the released code's finite-difference backward (see the module doc).

    Args:
        theta: logits (..., n).
        k: subset size, 1 <= k <= n.
        tau: temperature (> 0): the marginals of ``p(x) ∝ exp(<theta + G, x> / tau)`` over k-hot x.
        mask: optional (..., n) bool, False = never selected (gets exactly 0).
        hard: straight-through k-hot forward pass.
        generator: torch.Generator for the Gumbel noise.
        eps: finite-difference step along the upstream gradient (1e-2 in the released code).

    Returns:
        (..., n) tensor in [0, 1] summing to k over the allowed items (exactly k-hot when ``hard``).
    """
    _check(theta, k, tau, mask)
    if not float(eps) > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    w = _perturb(theta, generator) / tau
    if mask is not None:
        w = w.masked_fill(~mask, -1e9)  # far below every allowed item: weight exp(-80) at most, zeroed below
    soft = _FiniteDifferenceMarginals.apply(w, int(k), float(eps))
    if mask is not None:
        soft = soft * mask.to(soft.dtype)
    return _straight_through(soft, int(k), mask) if hard else soft


# name (the config's regularizer) -> relaxed k-subset sampler
SUBSET_METHODS = {"l2x": l2x_subset, "softsub": softsub_subset, "ef_topk_fd": ef_topk_fd_subset}


class SubsetSampler(TopK):
    """k-subsets whose relaxed sample is an earlier method's (``method``: one of :data:`SUBSET_METHODS`).

    Exact samples, ``argmax`` and ``masked`` are :class:`~sst.TopK`'s; :func:`sst.sample` (so the ``relaxed`` and
    ``straight_through`` estimators) draws ``SUBSET_METHODS[method](theta, k, tau, mask=mask, hard=hard,
    generator=generator, **options)`` instead of ``relax(perturb(theta))``, which these methods are not (L2X
    perturbs k times). Its only regularizer name is ``method``.

    Args:
        k: subset size. method: ``l2x``, ``softsub`` or ``ef_topk_fd``.
        mask: optional (..., n) bool of the selectable items of the next samples (see :meth:`with_mask`).
        **options: the method's own keywords (``eps`` of ``ef_topk_fd`` and ``softsub``).
    """

    def __init__(self, k: int, method: str, mask: Tensor | None = None, **options: float) -> None:
        if method not in SUBSET_METHODS:
            raise ValueError(f"method must be one of {', '.join(SUBSET_METHODS)}, got {method!r}")
        super().__init__(k)
        self.method, self.mask, self.options = method, mask, dict(options)
        self.regularizers = (method,)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v}" for k, v in self.options.items())
        return f"SubsetSampler(k={self.k}, method={self.method!r}{opts})"

    def with_mask(self, mask: Tensor | None) -> SubsetSampler:
        """The same sampler for items where ``mask`` (..., n) bool is True (False: padding, never selected)."""
        return SubsetSampler(self.k, self.method, mask, **self.options)

    def relaxed_sample(self, theta: Tensor, tau: float, hard: bool = False,
                       generator: torch.Generator | None = None) -> Tensor:
        """The method's relaxed (or, ``hard``, straight-through k-hot) sample (..., n) of logits ``theta`` (..., n)."""
        return SUBSET_METHODS[self.method](theta, self.k, tau, mask=self.mask, hard=hard, generator=generator,
                                           **self.options)

    def _relax(self, w: Tensor, tau, regularizer: str) -> Tensor:
        raise ValueError(f"{self!r} has no relax(w): its relaxed sample is not relax(perturb(theta)); "
                         "draw it with sst.sample or the relaxed / straight_through estimators")


class FiniteDifferenceTopK(TopK):
    """``TopK(k)`` whose ``exp_family_entropy`` relaxation is differentiated as the paper's released ``SoftTopK``
    layer is: forward the exact marginals of ``w / tau``, backward ``(mu(w/tau + eps g) - mu(w/tau - eps g)) /
    (2 eps)`` along the upstream gradient ``g`` (:func:`ef_topk_fd_subset`'s mechanism, without a mask)."""

    regularizers = ("exp_family_entropy",)

    def __init__(self, k: int, eps: float = 1e-2) -> None:
        if not float(eps) > 0:
            raise ValueError(f"eps (finite-difference step) must be > 0, got {eps}")
        super().__init__(k)
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"FiniteDifferenceTopK(k={self.k}, eps={self.eps})"

    def _relax(self, w: Tensor, tau, regularizer: str) -> Tensor:
        return _FiniteDifferenceMarginals.apply(w / tau, self.k, self.eps)
