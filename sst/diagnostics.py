"""Exact gradients of ``E[f(X)]`` by enumeration, and the bias and variance of any gradient estimator.

For small problems the law of the exact sample ``X = argmax <theta + noise, x>`` is enumerated:

* ``Categorical`` (theta of shape ``(n,)``): ``p(e_i) = softmax(theta)_i``.
* ``Binary`` (``(n,)``): ``p(x) = prod_i sigmoid(theta_i)^x_i sigmoid(-theta_i)^(1-x_i)`` over ``{0,1}^n``
  (enumerated in chunks; n = 20 is about a million points).
* ``TopK`` (``(n,)``, k-hot): the top-k set of Gumbel-perturbed weights is the set of k draws *without
  replacement* with probabilities ``softmax(theta)`` (Plackett-Luce), so
  ``p(S) = sum over orderings (s_1..s_k) of S of prod_j p_{s_j} / (1 - p_{s_1} - ... - p_{s_{j-1}})``.

``exact_gradient`` differentiates ``sum_x p(x; theta) f(x)`` with autograd. ``gradient_draws`` collects
per-item gradient estimates of an estimator over many draws, vectorised: each call of the estimator gets a
batch of ``batch_size`` copies of ``theta`` and each row of ``logits.grad`` (times the batch size) is one
independent draw. ``bias_variance`` compares them with the exact gradient.

For models too large to enumerate, ``gradient_moments`` gives the mean and variance of the gradient of any
stochastic loss with respect to any parameters (a real model's training loss under an estimator, say), from
repeated calls.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sst.estimators.structinfo import structure_kind

Objective = Callable[[Tensor], Tensor]

ENUMERABLE = ("Categorical", "Binary", "TopK")


def _check_theta(structure, theta: Tensor) -> str:
    kind = structure_kind(structure)
    if kind not in ENUMERABLE:
        raise ValueError(f"exact enumeration supports {', '.join(ENUMERABLE)}; got {type(structure).__name__}")
    if theta.dim() != 1:
        raise ValueError(f"theta must have shape (n,) (one item, no batch dim), got {tuple(theta.shape)}")
    return kind


def _binary_vertices(start: int, stop: int, n: int, like: Tensor) -> Tensor:
    idx = torch.arange(start, stop, device=like.device)
    bits = torch.arange(n, device=like.device)
    return ((idx[:, None] >> bits) & 1).to(like.dtype)


def topk_log_probs(theta: Tensor, subsets: Tensor) -> Tensor:
    """Log-probabilities of k-hot ``subsets`` ``(M, n)`` under Gumbel top-k of ``theta`` ``(n,)``, i.e.
    sampling ``k`` items without replacement with probabilities ``softmax(theta)``. Differentiable."""
    k = int(subsets[0].sum().round())
    idx = torch.stack([torch.nonzero(s > 0.5).squeeze(-1) for s in subsets])  # (M, k), small M only
    perms = torch.tensor(list(itertools.permutations(range(k))), device=theta.device)  # (k!, k)
    seq = idx[:, perms]  # (M, k!, k)
    logp = torch.log_softmax(theta, -1)
    lp = logp[seq]  # (M, k!, k)
    taken = torch.cumsum(lp.exp(), -1) - lp.exp()  # mass removed before each draw
    rest = torch.log1p(-taken.clamp(max=1.0 - torch.finfo(theta.dtype).eps))
    return torch.logsumexp((lp - rest).sum(-1), -1)


def enumerate_law(structure, theta: Tensor) -> tuple[Tensor, Tensor]:
    """All vertices ``(M, n)`` and their log-probabilities ``(M,)`` (differentiable in ``theta``).

    Categorical, TopK, and Binary with small ``n`` (all ``2^n`` points are materialised; see
    :func:`exact_gradient` for a chunked version)."""
    kind = _check_theta(structure, theta)
    n = theta.shape[0]
    if kind == "Categorical":
        return structure.enumerate(n).to(theta), torch.log_softmax(theta, -1)
    if kind == "Binary":
        v = _binary_vertices(0, 2**n, n, theta)
        ls1, ls0 = torch.nn.functional.logsigmoid(theta), torch.nn.functional.logsigmoid(-theta)
        return v, (v * ls1 + (1 - v) * ls0).sum(-1)
    v = structure.enumerate(n).to(theta)
    return v, topk_log_probs(theta, v)


def exact_gradient(structure, theta: Tensor, f: Objective, chunk: int = 2**16) -> tuple[Tensor, Tensor]:
    """``E[f(X)]`` and its exact gradient w.r.t. ``theta`` ``(n,)`` by enumeration.

    ``f`` maps ``(M, n)`` vertices to ``(M,)`` and is evaluated without gradient. Binary is enumerated in
    chunks of ``chunk`` points, so ``n = 20`` fits in memory."""
    kind = _check_theta(structure, theta)
    theta = theta.detach().requires_grad_(True)
    n = theta.shape[0]
    value = torch.zeros((), dtype=theta.dtype, device=theta.device)
    grad = torch.zeros_like(theta)
    with torch.enable_grad():
        if kind == "Binary":
            ls1, ls0 = torch.nn.functional.logsigmoid(theta), torch.nn.functional.logsigmoid(-theta)
            for start in range(0, 2**n, chunk):
                v = _binary_vertices(start, min(2**n, start + chunk), n, theta)
                with torch.no_grad():
                    fv = f(v).to(theta.dtype)
                e = ((v * ls1 + (1 - v) * ls0).sum(-1).exp() * fv).sum()
                grad += torch.autograd.grad(e, theta, retain_graph=True)[0]
                value += e.detach()
        else:
            v, logp = enumerate_law(structure, theta)
            with torch.no_grad():
                fv = f(v).to(theta.dtype)
            e = (logp.exp() * fv).sum()
            grad = torch.autograd.grad(e, theta)[0]
            value = e.detach()
    return value, grad


def gradient_draws(estimator, structure, theta: Tensor, f: Objective, num_draws: int, batch_size: int = 1000,
                   context: Tensor | None = None) -> Tensor:
    """``num_draws`` per-item gradient estimates ``(num_draws, *theta.shape)`` of ``estimator`` at ``theta``.

    Each call gets ``batch_size`` copies of ``theta``; ``out.loss`` is the batch mean, so row ``i`` of
    ``d loss / d logits`` times the batch size is item ``i``'s estimate. The estimator's own parameters are
    not touched (``torch.autograd.grad`` w.r.t. the logits only); its running statistics (EMA baselines)
    update as in training when it is in training mode. ``context``: one item's context, repeated."""
    if num_draws % batch_size != 0:
        raise ValueError(f"num_draws ({num_draws}) must be a multiple of batch_size ({batch_size})")
    out_draws = []
    for _ in range(num_draws // batch_size):  # loop over calls, each vectorised over batch_size draws
        logits = theta.detach().expand(batch_size, *theta.shape).clone().requires_grad_(True)
        ctx = None if context is None else context.expand(batch_size, *context.shape)
        out = estimator(structure, logits, f, context=ctx)
        (g,) = torch.autograd.grad(out.loss, logits)
        out_draws.append(g * batch_size)
    return torch.cat(out_draws)


def batch_coupled(estimator) -> bool:
    """Whether the estimates of one call are correlated across rows (REINFORCE's batch baseline)."""
    return getattr(estimator, "baseline", None) == "batch"


def summarize(draws: Tensor, exact: Tensor, batch_size: int | None = None, coupled: bool = False) -> dict:
    """Bias and variance of ``draws`` ``(D, *shape)`` against the exact gradient ``exact`` ``(*shape)``.

    ``se`` is the standard error of the mean per coordinate: from the per-draw variance, or (``coupled``)
    from the means of the calls of ``batch_size`` draws, which are independent."""
    d = draws.shape[0]
    flat = draws.reshape(d, -1).double()
    ex = exact.reshape(-1).double()
    mean = flat.mean(0)
    var = flat.var(0, unbiased=True)
    se = (var / d).sqrt()
    if coupled and batch_size:
        chunks = flat.reshape(d // batch_size, batch_size, -1).mean(1)
        if chunks.shape[0] >= 2:
            se = chunks.std(0, unbiased=True) / math.sqrt(chunks.shape[0])
    bias = mean - ex
    ex_norm = ex.norm().clamp_min(1e-30)
    z = bias.abs() / se.clamp_min(1e-30)
    cos = torch.dot(mean, ex) / (mean.norm() * ex_norm).clamp_min(1e-30)
    return {
        "num_draws": d,
        "exact": ex,
        "mean": mean,
        "se": se,
        "bias_norm": float(bias.norm()),
        "rel_bias": float(bias.norm() / ex_norm),
        "variance": float(var.sum()),  # trace of the per-draw covariance
        "rel_variance": float(var.sum() / ex_norm**2),
        "mse": float(bias.norm() ** 2 + var.sum()),
        "max_abs_z": float(z.max()),
        "cosine": float(cos),
        "sign_agreement": float(((mean.sign() == ex.sign()) | (ex == 0)).double().mean()),
    }


def bias_variance(estimator, structure, theta: Tensor, f: Objective, num_draws: int = 10000,
                  batch_size: int = 1000, exact: Tensor | None = None, context: Tensor | None = None) -> dict:
    """Bias and variance of ``estimator``'s per-item gradient estimate of ``E[f(X)]`` at ``theta``.

    ``exact`` (the exact gradient) is computed by enumeration when not given. Returns the dictionary of
    :func:`summarize`."""
    if exact is None:
        exact = exact_gradient(structure, theta, f)[1]
    draws = gradient_draws(estimator, structure, theta, f, num_draws, batch_size, context)
    return summarize(draws, exact, batch_size, batch_coupled(estimator))


def tune(estimator, structure, theta: Tensor, f: Objective, steps: int = 200, batch_size: int = 100,
         lr: float = 1e-2, context: Tensor | None = None) -> None:
    """Train an estimator's own parameters (REBAR/RELAX control variates, NVIL's baseline) and running
    statistics on a fixed ``theta`` for ``steps`` Adam steps, as a training loop would (one
    ``out.loss.backward()`` per step; the logits' gradient is discarded)."""
    params = [p for p in estimator.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if params else None
    estimator.train()
    for _ in range(steps):
        logits = theta.detach().expand(batch_size, *theta.shape).clone().requires_grad_(True)
        ctx = None if context is None else context.expand(batch_size, *context.shape)
        out = estimator(structure, logits, f, context=ctx)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
    if opt is not None:
        opt.zero_grad(set_to_none=True)


@dataclass(frozen=True)
class GradientMoments:
    """Moments of ``draws`` gradient draws of P parameters (see :func:`gradient_moments`).

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


def gradient_moments(loss: Callable[[], Tensor], params: Sequence[Tensor], draws: int) -> GradientMoments:
    """Mean and variance of the gradient of a stochastic scalar ``loss()`` with respect to ``params`` over
    ``draws`` calls (each call draws its own noise: an estimator's surrogate loss on a fixed minibatch, say).

    Moments are accumulated in float64 over the calls, so memory stays at a few copies of the P parameters
    whatever the number of draws; the gradients are taken with ``torch.autograd.grad`` (``.grad`` fields are
    left alone).

    Args:
        loss: a function of no arguments returning a 0-dim tensor that depends on every tensor of ``params``.
        params: the tensors (requiring gradients) to differentiate by; flattened in this order.
        draws: R >= 2.

    Returns:
        GradientMoments over the P = sum of ``params``' sizes coordinates.
    """
    if int(draws) < 2:
        raise ValueError(f"draws must be an integer >= 2, got {draws}")
    params = list(params)
    if not params or not all(isinstance(p, Tensor) and p.requires_grad for p in params):
        raise ValueError("params must be a non-empty sequence of tensors that require gradients")
    n = sum(p.numel() for p in params)
    total = torch.zeros(n, dtype=torch.float64, device=params[0].device)
    total_sq = torch.zeros_like(total)
    for _ in range(int(draws)):
        value = loss()
        if not isinstance(value, Tensor) or value.dim() != 0:
            raise ValueError(f"loss() must return a 0-dim tensor, got {getattr(value, 'shape', type(value))}")
        grads = torch.autograd.grad(value, params)
        g = torch.cat([gr.reshape(-1) for gr in grads]).double()
        total += g
        total_sq += g * g
    r = int(draws)
    mean = total / r
    var = ((total_sq - r * mean * mean) / (r - 1)).clamp_min(0.0)
    return GradientMoments(draws=r, mean=mean, var=var)


__all__ = [
    "ENUMERABLE",
    "GradientMoments",
    "batch_coupled",
    "bias_variance",
    "enumerate_law",
    "exact_gradient",
    "gradient_draws",
    "gradient_moments",
    "summarize",
    "topk_log_probs",
    "tune",
]
