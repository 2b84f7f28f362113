"""How noisy the encoder gradient of a trained discrete VAE is under a gradient estimator.

One draw is the gradient, with respect to the encoder's parameters, of the training loss (the estimator's surrogate
loss plus the analytic KL term at weight 1) on one fixed minibatch ``x`` (B, 784): between draws only the
estimator's randomness changes, so the spread of the draws is the estimator's share of the noise in a training
step (the minibatch's share is the same for every estimator). The decoder's gradient is left out: every estimator
gives it the same way, as a plain Monte Carlo average of ``grad f`` at its samples. The moments themselves are
:func:`sst.diagnostics.gradient_moments`'s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sst.diagnostics import GradientMoments, gradient_moments
from sst.estimators import tile

# estimators without parameters of their own: they can be measured at any model, not only at the one they trained
PARAMETER_FREE = ("relaxed", "straight_through", "reinforce", "muprop")


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
    if x.dim() != 2:
        raise ValueError(f"x must be a (B, pixels) minibatch, got shape {tuple(x.shape)}")

    def loss() -> Tensor:
        logits = model.encode(x)
        out = estimator(structure, logits, lambda z: model.recon_nll(tile(x, z.shape[0]), z), context=x,
                        generator=generator)
        return out.loss + model.kl(logits).mean()

    was_training = estimator.training
    estimator.eval()
    try:
        return gradient_moments(loss, [p for p in model.encoder.parameters() if p.requires_grad], draws)
    finally:
        estimator.train(was_training)
