"""How noisy the encoder gradient of a trained discrete VAE is under a gradient estimator.

One draw is the gradient, with respect to the encoder's parameters, of the training loss (the estimator's surrogate
loss plus the analytic KL term at weight 1) on one fixed minibatch ``x`` (B, 784): between draws only the
estimator's randomness changes, so the spread of the draws is the estimator's share of the noise in a training
step (the minibatch's share is the same for every estimator). The decoder's gradient is left out: every estimator
gives it the same way, as a plain Monte Carlo average of ``grad f`` at its samples.

Moments are accumulated in float64 over ``draws`` passes, so memory stays at a few copies of the encoder
(P parameters) whatever the number of draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sst.estimators import tile

# estimators without parameters of their own: they can be measured at any model, not only at the one they trained
PARAMETER_FREE = ("relaxed", "straight_through", "reinforce", "muprop")


@dataclass(frozen=True)
class GradientMoments:
    """Moments of ``draws`` gradient draws of P parameters.

    Attributes:
        draws: number of draws R.
        mean: (P,) float64 mean draw.
        var: (P,) float64 unbiased per-coordinate variance over the draws.
    """

    draws: int
    mean: Tensor
    var: Tensor

    @property
    def total_var(self) -> float:
        """tr Cov(g): the expected squared distance of one draw from the mean gradient."""
        return float(self.var.sum())

    @property
    def signal(self) -> float:
        """An unbiased estimate of ||E g||^2 (||mean||^2 less its own noise, tr Cov / R)."""
        return float(self.mean.pow(2).sum()) - self.total_var / self.draws

    def summary(self) -> dict[str, float]:
        """``total_var``, ``log10_total_var``, ``mean_sq_norm`` (||E g||^2, unbiased) and ``snr`` (||E g||^2 over
        tr Cov, the signal-to-noise ratio of one draw)."""
        return {"total_var": self.total_var, "log10_total_var": math.log10(max(self.total_var, 1e-300)),
                "mean_sq_norm": self.signal, "snr": self.signal / max(self.total_var, 1e-300)}


def encoder_gradient_moments(model: nn.Module, structure: Any, estimator: nn.Module, x: Tensor, draws: int,
                             generator: torch.Generator | None = None) -> GradientMoments:
    """Mean and variance over ``draws`` draws of the encoder gradient of a ``DiscreteVAE``'s training loss.

    Args:
        model: a ``DiscreteVAE`` (``encode``, ``recon_nll``, ``kl``, ``encoder``).
        structure: its latent's structure (``sst.Categorical()`` or ``sst.Binary()``).
        estimator: an ``sst.estimators.Estimator`` at the temperature to measure; it runs in eval mode (running
            statistics frozen, no self-tuning of REBAR/RELAX's parameters, which does not change the encoder's
            gradient) and is restored to its mode afterwards.
        x: (B, 784) one fixed minibatch of binary images.
        draws: R >= 2.
        generator: the estimators' noise (default: torch's global generator).

    Returns:
        GradientMoments over the P encoder parameters, flattened in ``model.encoder.parameters()`` order.
    """
    if int(draws) < 2:
        raise ValueError(f"draws must be an integer >= 2, got {draws}")
    if x.dim() != 2:
        raise ValueError(f"x must be a (B, pixels) minibatch, got shape {tuple(x.shape)}")
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    total = torch.zeros(n, dtype=torch.float64, device=x.device)
    total_sq = torch.zeros_like(total)
    was_training = estimator.training
    estimator.eval()
    try:
        for _ in range(int(draws)):
            logits = model.encode(x)
            out = estimator(structure, logits, lambda z: model.recon_nll(tile(x, z.shape[0]), z), context=x,
                            generator=generator)
            loss = out.loss + model.kl(logits).mean()
            grads = torch.autograd.grad(loss, params)
            g = torch.cat([gr.reshape(-1) for gr in grads]).double()
            total += g
            total_sq += g * g
    finally:
        estimator.train(was_training)
    r = int(draws)
    mean = total / r
    var = ((total_sq - r * mean * mean) / (r - 1)).clamp_min(0.0)
    return GradientMoments(draws=r, mean=mean, var=var)

