"""The discrete VAE of Jang et al. (2017): MLP encoder/decoder, Bernoulli pixels, uniform discrete prior.

Shapes (B = batch, K = importance samples):
    x       (B, 784) binary pixels as float
    logits  (B, *event_shape): (B, 20, 10) for 20 ten-way categorical variables, (B, 200) for 200 Bernoulli ones
    z       (..., B, *event_shape): one-hot rows (categorical) or 0/1 entries (Bernoulli), hard or relaxed
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LATENTS = ("categorical", "bernoulli")
# weight initialisations: PyTorch's nn.Linear default, or Glorot/Xavier uniform weights with zero biases (the default
# of TensorFlow's fully connected layers, which Jang et al.'s released code used)
INITS = ("torch", "xavier")


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DiscreteVAE(nn.Module):
    """Encoder 784-512-256-latent logits, decoder latent-256-512-784, ReLU, Bernoulli likelihood.

    Args:
        latent: ``"categorical"`` (``num_vars`` variables of ``num_classes`` classes) or ``"bernoulli"``
            (``num_vars`` binary variables; ``num_classes`` ignored).
        hidden: encoder hidden sizes; the decoder uses them reversed.
        init: ``"torch"`` (nn.Linear's default: weights and biases uniform in +-1/sqrt(fan_in)) or ``"xavier"``
            (weights uniform in +-sqrt(6 / (fan_in + fan_out)), biases zero: TensorFlow's default).
    """

    def __init__(self, latent: str = "categorical", num_vars: int = 20, num_classes: int = 10,
                 hidden: tuple[int, ...] = (512, 256), data_dim: int = 784, init: str = "torch") -> None:
        super().__init__()
        if latent not in LATENTS:
            raise ValueError(f"latent must be one of {', '.join(LATENTS)}, got {latent!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.latent = latent
        self.num_vars = int(num_vars)
        self.num_classes = int(num_classes) if latent == "categorical" else 2
        self.event_shape = (self.num_vars, self.num_classes) if latent == "categorical" else (self.num_vars,)
        self.latent_dim = math.prod(self.event_shape)
        self.data_dim = data_dim
        hidden = list(hidden)
        self.encoder = mlp([data_dim, *hidden, self.latent_dim])
        self.decoder = mlp([self.latent_dim, *reversed(hidden), data_dim])
        if init == "xavier":
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def encode(self, x: Tensor) -> Tensor:
        """Logits of q(z|x): (B, 784) -> (B, *event_shape)."""
        return self.encoder(x).view(*x.shape[:-1], *self.event_shape)

    def decode(self, z: Tensor) -> Tensor:
        """Pixel logits of p(x|z): (..., *event_shape) -> (..., 784)."""
        lead = z.shape[: z.dim() - len(self.event_shape)]
        return self.decoder(z.reshape(*lead, self.latent_dim))

    def recon_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """-log p(x|z) summed over pixels: x (B, 784), z (..., B, *event) -> (..., B). Relaxed z is allowed."""
        px = self.decode(z)
        shape = torch.broadcast_shapes(px.shape, x.shape)
        return F.binary_cross_entropy_with_logits(px.expand(shape), x.expand(shape), reduction="none").sum(-1)

    def log_q(self, logits: Tensor, z: Tensor) -> Tensor:
        """log q(z|x) of hard samples: logits (B, *event), z (..., B, *event) -> (..., B)."""
        if self.latent == "categorical":
            return (z * torch.log_softmax(logits, -1)).sum((-2, -1))
        return (z * F.logsigmoid(logits) + (1 - z) * F.logsigmoid(-logits)).sum(-1)

    def log_prior(self) -> float:
        """log p(z) under the uniform prior (the same for every z)."""
        return -self.num_vars * math.log(self.num_classes)

    def kl(self, logits: Tensor) -> Tensor:
        """KL(q(z|x) || uniform) of the discrete posterior, analytic: (B, *event) -> (B,)."""
        if self.latent == "categorical":
            logp = torch.log_softmax(logits, -1)
            return (logp.exp() * logp).sum((-2, -1)) - self.log_prior()
        q = torch.sigmoid(logits)
        return (q * F.logsigmoid(logits) + (1 - q) * F.logsigmoid(-logits)).sum(-1) - self.log_prior()

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n hard draws from the uniform prior, shape (n, *event_shape)."""
        device = next(self.parameters()).device
        if self.latent == "categorical":
            idx = torch.randint(self.num_classes, (n, self.num_vars), device=device, generator=generator)
            return F.one_hot(idx, self.num_classes).float()
        return torch.randint(2, (n, self.num_vars), device=device, generator=generator).float()


def neg_elbo(model: DiscreteVAE, x: Tensor, sample) -> tuple[Tensor, Tensor, Tensor]:
    """Single-sample negative ELBO per item with a hard sample z = sample(logits).

    Returns (neg_elbo, recon_nll, kl), each of shape (B,); the KL is the analytic one of the discrete posterior.
    """
    logits = model.encode(x)
    z = sample(logits)
    nll = model.recon_nll(x, z)
    kl = model.kl(logits)
    return nll + kl, nll, kl


def iw_neg_elbo(model: DiscreteVAE, x: Tensor, sample, num_samples: int = 100) -> Tensor:
    """Negative importance-weighted bound -log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q hard; shape (B,).

    ``sample`` maps logits of shape (K, B, *event) to hard samples of the same shape.
    """
    logits = model.encode(x)
    z = sample(logits.unsqueeze(0).expand(num_samples, *logits.shape))
    log_w = -model.recon_nll(x, z) + model.log_prior() - model.log_q(logits, z)
    return -(torch.logsumexp(log_w, 0) - math.log(num_samples))
