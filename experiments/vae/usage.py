"""How much of its latent code a trained discrete VAE's posterior uses, variable by variable.

Shapes (N = images, V = latent variables, K = classes per variable; K = 2 for Bernoulli variables):
    logits  (N, V, K) categorical posterior logits, or (N, V) Bernoulli logits (log q(z=1) - log q(z=0))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def posterior_log_probs(logits: Tensor, latent: str) -> Tensor:
    """log q(z_v = c | x) for every class: (N, V, K) from categorical logits (N, V, K) or Bernoulli ones (N, V)."""
    if latent == "categorical":
        if logits.dim() != 3:
            raise ValueError(f"logits must be (N, V, K) for a categorical latent, got shape {tuple(logits.shape)}")
        return torch.log_softmax(logits, -1)
    if latent == "bernoulli":
        if logits.dim() != 2:
            raise ValueError(f"logits must be (N, V) for a Bernoulli latent, got shape {tuple(logits.shape)}")
        return torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], -1)
    raise ValueError(f"latent must be 'categorical' or 'bernoulli', got {latent!r}")


def latent_usage(logits: Tensor, latent: str, decided: float = 0.99) -> dict[str, Tensor]:
    """Per-variable statistics of the posterior q(z|x) over a set of images, all in nats, each of shape (V,):

    - ``kl``: mean over images of KL(q(z_v|x) || uniform); summed over v, the model's mean KL term.
    - ``entropy``: mean over images of H(q(z_v|x)), the randomness a hard sample of z_v adds given x
      (``kl + entropy = log K`` for every variable).
    - ``mutual_info``: I(x; z_v) = H(mean_x q(z_v|x)) - mean_x H(q(z_v|x)), the part of the KL that tells
      images apart (the rest is the aggregate posterior's distance from the uniform prior).
    - ``decided``: the fraction of images whose posterior puts at least ``decided`` on one class of z_v.
    """
    if not 0.0 < decided < 1.0:
        raise ValueError(f"decided must be in (0, 1), got {decided}")
    logq = posterior_log_probs(logits.double(), latent)
    q = logq.exp()
    h_cond = -(q * logq).sum(-1)                                     # (N, V)
    q_bar = q.mean(0)                                                # (V, K)
    h_marg = -(q_bar * torch.log(q_bar.clamp_min(1e-300))).sum(-1)   # (V,)
    entropy = h_cond.mean(0)
    return {"kl": math.log(q.shape[-1]) - entropy, "entropy": entropy, "mutual_info": h_marg - entropy,
            "decided": (q.amax(-1) >= decided).double().mean(0)}
