"""Score-function estimators: REINFORCE with baselines, NVIL and MuProp.

All of them differentiate ``log p`` of the forward sample: the exact log-probability for Categorical and
Binary, and the log-density of the perturbation ``U = theta + noise`` for every other structure (see
:mod:`sst.estimators.structinfo`). The surrogate of one row is

    f(x) + (f(x) - b) * (log p - log p.detach())  [+ zero-valued control-variate corrections]

so its value is ``f(x)``, the parameters ``f`` closes over get ``grad f(x)``, and ``theta`` gets
``(f(x) - b) grad log p``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sst.estimators.base import Estimator, Objective, call_objective, flat_sum, tile, zero_valued
from sst.estimators.structinfo import StructureInfo

BASELINES = ("none", "ema", "batch", "loo")


class Reinforce(Estimator):
    """REINFORCE (score function) with a baseline.

    Options:
        baseline: ``"none"``; ``"ema"`` an exponential moving average of ``f`` over past calls (decay
            ``ema_decay``, bias-corrected, updated in training mode after it is used); ``"batch"`` the mean of
            ``f`` over the *other* rows of the call (all items and samples); ``"loo"`` the mean over the
            other ``num_samples - 1`` samples of the same item (needs ``num_samples >= 2``). All are unbiased.
        num_samples: samples per item (the per-item estimate averages them).
        ema_decay: decay of the EMA baseline.
    """

    name = "reinforce"
    needs_density = True

    def __init__(self, baseline: str = "none", num_samples: int = 1, ema_decay: float = 0.99,
                 tau: float = 1.0, regularizer: str | None = None,
                 event_shape: Sequence[int] | None = None) -> None:
        super().__init__(tau=tau, regularizer=regularizer, num_samples=num_samples, event_shape=event_shape)
        baseline = "none" if baseline is None else str(baseline)
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
        if baseline == "loo" and self.num_samples < 2:
            raise ValueError(f"baseline='loo' needs num_samples >= 2, got num_samples={self.num_samples}")
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.baseline = baseline
        self.ema_decay = float(ema_decay)
        self.register_buffer("ema_mean", torch.zeros(()))
        self.register_buffer("ema_steps", torch.zeros(()))

    def extra_repr(self) -> str:
        return f"baseline={self.baseline}, num_samples={self.num_samples}, ema_decay={self.ema_decay}"

    # sampling --------------------------------------------------------------------------------------
    @staticmethod
    def draw(structure, theta: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``u = theta + noise`` (no gradient) and the exact sample ``x = argmax <u, x>``."""
        u = structure.perturb(theta.detach(), generator=generator)
        return u, structure.argmax(u)

    # EMA -------------------------------------------------------------------------------------------
    # The running statistics are read and updated in eager mode even inside compiled code
    # (torch.compiler.disable): with a traced forward that read them and then updated them in place, NVIL's
    # gradients under torch.compile differed from eager mode's from the first step (they agreed with the
    # statistics frozen, and agree with them out of the graph; tests/sst/test_estimators_compiled.py).
    @torch.compiler.disable
    def _ema(self, like: Tensor) -> Tensor:
        """Bias-corrected running mean of ``f`` (0 before the first update)."""
        steps = self.ema_steps
        corr = 1.0 - torch.pow(torch.as_tensor(self.ema_decay, dtype=steps.dtype, device=steps.device), steps)
        est = torch.where(steps > 0, self.ema_mean / corr.clamp_min(1e-12), torch.zeros_like(self.ema_mean))
        return est.to(like.dtype)

    @torch.compiler.disable
    @torch.no_grad()
    def _update_ema(self, values: Tensor) -> None:
        if self.training:
            d = self.ema_decay
            self.ema_mean.mul_(d).add_((1.0 - d) * values.mean().to(self.ema_mean.dtype))
            self.ema_steps.add_(1.0)

    def baseline_values(self, values: Tensor, batch: int) -> Tensor:
        """Baseline per row for the detached objective values ``(S*B,)``."""
        if self.baseline == "none":
            return torch.zeros_like(values)
        if self.baseline == "ema":
            return self._ema(values).expand_as(values)
        if self.baseline == "batch":
            n = values.shape[0]
            if n < 2:
                raise ValueError("baseline='batch' needs at least 2 rows (batch * num_samples >= 2)")
            return (values.sum() - values) / (n - 1)
        v = values.reshape(self.num_samples, batch)  # loo
        return ((v.sum(0, keepdim=True) - v) / (self.num_samples - 1)).reshape(-1)

    def estimate(self, info: StructureInfo, structure, logits: Tensor, theta: Tensor, f: Objective,
                 context: Tensor | None, generator: torch.Generator | None):
        u, x = self.draw(structure, theta, generator)
        value = call_objective(f, x)
        logp = info.score_log_prob(theta, x, u)
        fx = value.detach()
        signal = fx - self.baseline_values(fx, logits.shape[0])
        loss = (value + signal * zero_valued(logp)).mean()
        if self.baseline == "ema":
            self._update_ema(fx)
        return loss, x, value, {}


class NVIL(Reinforce):
    """NVIL (Mnih & Gregor 2014): REINFORCE with an input-dependent baseline ``C(context)``, a running-mean
    baseline ``c`` and variance normalisation.

    The learning signal of a row is ``(f - c - C(context)) / max(1, sqrt(v))`` with ``c``, ``v`` running
    mean and variance of ``f - C(context)`` (decay ``ema_decay``, updated in training mode after use).
    ``C`` is an MLP ``context_dim -> hidden -> 1`` (a single learned constant when ``context_dim`` is None)
    trained on the squared error ``(f - c - C(context))^2`` through the same ``out.loss.backward()``; the
    term is zero in value and reaches only ``C``'s parameters (the context is detached).

    With ``normalize=True`` the estimate is the unbiased one divided by ``max(1, sqrt(v))``, a positive
    scale common to the whole batch (a per-step learning-rate change); ``normalize=False`` keeps it unbiased.
    The scale reaches only the score-function term: gradient terms the caller adds exactly (a VAE's analytic KL)
    keep their size and can then dominate the encoder (a VAE posterior collapsed this way:
    results/vae/nvil_normalized_collapse.md); Mnih & Gregor normalise a signal that holds the whole objective.

    Options: ``context_dim``, ``hidden``, ``ema_decay``, ``normalize``, ``num_samples``.
    """

    name = "nvil"

    def __init__(self, context_dim: int | None = None, hidden: int = 100, ema_decay: float = 0.99,
                 normalize: bool = True, num_samples: int = 1, tau: float = 1.0,
                 regularizer: str | None = None, event_shape: Sequence[int] | None = None) -> None:
        super().__init__(baseline="none", num_samples=num_samples, ema_decay=ema_decay, tau=tau,
                         regularizer=regularizer, event_shape=event_shape)
        self.context_dim = None if context_dim is None else int(context_dim)
        self.normalize = bool(normalize)
        if self.context_dim is None:
            self.net = None
            self.constant = nn.Parameter(torch.zeros(()))
        else:
            if self.context_dim < 1 or int(hidden) < 1:
                raise ValueError(f"context_dim and hidden must be >= 1, got {context_dim}, {hidden}")
            self.net = nn.Sequential(nn.Linear(self.context_dim, int(hidden)), nn.Tanh(), nn.Linear(int(hidden), 1))
            self.constant = None
        self.register_buffer("ema_var", torch.zeros(()))

    def extra_repr(self) -> str:
        return f"context_dim={self.context_dim}, normalize={self.normalize}, num_samples={self.num_samples}"

    def input_baseline(self, context: Tensor | None, batch: int, like: Tensor) -> Tensor:
        """``C(context)`` per item, ``(B,)``."""
        if self.net is None:
            if context is not None:
                raise ValueError("nvil was built without context_dim, but a context was passed; "
                                 "build it with context_dim=<size of the flattened context>")
            return self.constant.to(like.dtype).expand(batch)
        if context is None:
            raise ValueError(f"nvil was built with context_dim={self.context_dim} and needs context=(batch, ...)")
        c = context.detach().reshape(context.shape[0], -1)
        if c.shape != (batch, self.context_dim):
            raise ValueError(f"context must flatten to (batch, context_dim) = ({batch}, {self.context_dim}), "
                             f"got {tuple(context.shape)}")
        w = self.net[0].weight
        return self.net(c.to(w.dtype)).squeeze(-1).to(like.dtype)

    def learned_baseline(self, context: Tensor | None, batch: int, like: Tensor) -> Tensor:
        """The whole baseline ``C(context) + c`` per item, ``(B,)`` (no gradient): what the learning signal
        subtracts from ``f``. A diagnostic: compare ``E[(f - baseline)^2]`` with ``Var(f | context)``."""
        with torch.no_grad():
            return self.input_baseline(context, batch, like) + self._running(like)[0]

    @torch.compiler.disable
    def _running(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Bias-corrected running mean and variance of the residual ``f - C(context)`` (0 before the first
        update), as new tensors. Eager in compiled code, as :meth:`Reinforce._ema`."""
        steps = self.ema_steps
        corr = (1.0 - torch.pow(torch.as_tensor(self.ema_decay, dtype=steps.dtype, device=steps.device), steps))
        corr = corr.clamp_min(1e-12)
        zero = torch.zeros_like(self.ema_mean)
        mean = torch.where(steps > 0, self.ema_mean / corr, zero)
        var = torch.where(steps > 0, self.ema_var / corr, zero)
        return mean.to(like.dtype), var.to(like.dtype)

    def estimate(self, info: StructureInfo, structure, logits: Tensor, theta: Tensor, f: Objective,
                 context: Tensor | None, generator: torch.Generator | None):
        batch = logits.shape[0]
        u, x = self.draw(structure, theta, generator)
        value = call_objective(f, x)
        logp = info.score_log_prob(theta, x, u)
        fx = value.detach()
        c_net = tile(self.input_baseline(context, batch, fx), fx.shape[0])
        mean, var = self._running(fx)
        residual = fx - c_net.detach()
        signal = residual - mean
        if self.normalize:
            signal = signal / var.sqrt().clamp_min(1.0)
        baseline_loss = (fx - mean - c_net).pow(2).mean()
        loss = (value + signal * zero_valued(logp)).mean() + zero_valued(baseline_loss)
        self._update_running(residual)
        return loss, x, value, {"baseline_mse": baseline_loss.detach()}

    @torch.compiler.disable
    @torch.no_grad()
    def _update_running(self, residual: Tensor) -> None:
        """In training mode, fold the residuals ``(S*B,)`` into the running mean and variance (eager in compiled
        code, as :meth:`Reinforce._ema`)."""
        if self.training:
            d = self.ema_decay
            self.ema_mean.mul_(d).add_((1.0 - d) * residual.mean().to(self.ema_mean.dtype))
            self.ema_var.mul_(d).add_((1.0 - d) * residual.var(unbiased=False).to(self.ema_var.dtype))
            self.ema_steps.add_(1.0)


class MuProp(Reinforce):
    """MuProp (Gu et al. 2016): REINFORCE with the first-order Taylor expansion of ``f`` as control variate.

    Categorical and Binary: around the mean ``mu = E[X]`` (softmax / sigmoid of the logits),
    ``b(x) = f(mu) + f'(mu).(x - mu)``; the estimate is ``(f(x) - b(x)) grad log p(x) + f'(mu) dmu/dtheta``.

    Other structures (no tractable ``E[X]``): the same construction in the space of the perturbation
    ``U = theta + noise``, whose density is known: ``h(u) = f(relax(u, tau))`` is expanded around
    ``E[U] = theta + E[noise]``, ``b(u) = h(E U) + h'(E U).(u - E U)``, and the analytic term is ``h'(E U)``.
    Both are unbiased for any ``f`` differentiable on conv X; ``tau``/``regularizer`` matter only for the
    second form. ``f`` is called on the ``S * B`` samples, then on the ``S * B`` expansion points.

    A baseline can centre what the Taylor term leaves (Gu et al. combine MuProp with NVIL's baselines): the
    residual ``r = f(x) - b(x)`` gets the REINFORCE baselines of :class:`Reinforce` (``"ema"`` of ``r``,
    ``"batch"`` the mean ``r`` of the other rows, ``"loo"`` of the other samples of the item), each
    independent of the row's own sample, so the estimate stays unbiased.

    Options: ``baseline`` (none | ema | batch | loo; default none, plain MuProp), ``ema_decay``,
    ``num_samples`` (and ``tau``, ``regularizer`` for structures other than Categorical/Binary).
    """

    name = "muprop"

    def __init__(self, baseline: str = "none", num_samples: int = 1, ema_decay: float = 0.99, tau: float = 1.0,
                 regularizer: str | None = None, event_shape: Sequence[int] | None = None) -> None:
        super().__init__(baseline=baseline, num_samples=num_samples, ema_decay=ema_decay, tau=tau,
                         regularizer=regularizer, event_shape=event_shape)

    def extra_repr(self) -> str:
        return (f"baseline={self.baseline}, tau={self.tau}, regularizer={self.regularizer}, "
                f"num_samples={self.num_samples}")

    def estimate(self, info: StructureInfo, structure, logits: Tensor, theta: Tensor, f: Objective,
                 context: Tensor | None, generator: torch.Generator | None):
        u, x = self.draw(structure, theta, generator)
        if info.exact_log_prob:
            anchor = info.mean(theta.detach()).requires_grad_(True)  # expansion point mu, a leaf
            point = anchor
        else:
            anchor = (theta.detach() + info.noise_mean()).requires_grad_(True)  # E[U]
            point = structure.relax(anchor, self.tau, self.regularizer)
        # two calls, not one on the stacked rows: the final backward then runs through f on the samples only
        value, f0 = call_objective(f, x), call_objective(f, point.to(x.dtype))
        logp = info.score_log_prob(theta, x, u)
        if not (torch.is_grad_enabled() and f0.requires_grad):
            return value.mean(), x, value, {}
        (g0,) = torch.autograd.grad(f0.sum(), anchor, retain_graph=True)
        if info.exact_log_prob:
            taylor = f0.detach() + flat_sum(g0 * (x - anchor.detach()))
            analytic = flat_sum(g0 * zero_valued(info.mean(theta)))  # f'(mu) dmu/dtheta
        else:
            g0 = info.project(g0)
            taylor = f0.detach() + flat_sum(g0 * (u - anchor.detach()))
            analytic = flat_sum(g0 * zero_valued(theta))  # h'(E U) dE[U]/dtheta, dE[U]/dtheta = I
        residual = value.detach() - taylor
        signal = residual - self.baseline_values(residual, logits.shape[0])
        loss = (value + signal * zero_valued(logp) + analytic).mean()
        if self.baseline == "ema":
            self._update_ema(residual)
        return loss, x, value, {"taylor_gap": residual.abs().mean()}

