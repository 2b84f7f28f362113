"""REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018) for Categorical and Binary structures.

Both use the relaxed objective at a *conditional* relaxed sample as control variate. With
``z = theta' + noise`` (``theta'`` the log-normalised logits for Categorical, the logits for Binary),
``b = H(z)`` the exact sample, ``z~ ~ p(z | b)`` reparameterised, and a control variate ``c``, the
per-item estimate is

    g = (f(b) - c(z~)) d/dtheta log p(b) + d/dtheta c(z) - d/dtheta c(z~),

unbiased for any ``c``. REBAR: ``c(z) = eta * f(sigma_lambda(z))`` with ``sigma_lambda(z)`` the
structure's relaxation ``relax(z / lambda, 1, regularizer)`` (``relax(z, lambda)`` for every regularizer).
RELAX: ``c(z) = eta * f(sigma_lambda(z)) + r_rho(z)`` with ``r_rho`` a small MLP on the flattened ``z``
(its last layer starts at zero, so RELAX starts as REBAR).

Tuning: ``eta``, the log-temperature and ``r_rho`` minimise the single-sample variance proxy
``mean_items ||g||^2`` (its gradient equals that of the variance, ``E[g]`` does not depend on them). The
gradient of that proxy w.r.t. the estimator's own parameters is computed inside the call (double
backward through ``f``) and injected into ``out.loss`` by zero-valued terms, so one
``out.loss.backward()`` plus the experiment's optimizer step trains them; the logits receive ``g`` and
the parameters ``f`` closes over receive ``grad f(b)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sst import noise
from sst.estimators.base import Estimator, Objective, call_objective, flat_sum, zero_valued
from sst.estimators.structinfo import StructureInfo, gumbel_from_uniform, logistic_from_uniform


def categorical_conditional(theta: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """A draw of ``z = theta + Gumbel`` conditioned on ``argmax_i z_i = b`` (one-hot over the last dim).

    ``theta`` must be log-normalised (``logsumexp(theta, -1) = 0``), ``v`` uniforms in (0, 1). The maximum
    is ``-log(-log v_b)`` (a standard Gumbel, independent of the argmax); the others are Gumbels with
    locations ``theta_i`` truncated below it: ``-log(-log(v_i) exp(-theta_i) - log v_b)``, in log space.
    Differentiable in ``theta``.
    """
    log_e = torch.log(-torch.log(v))  # log of Exp(1) variates
    log_eb = (log_e * b).sum(-1, keepdim=True)
    others = -torch.logaddexp(log_e - theta, log_eb)
    return torch.where(b > 0, -log_eb, others)


def binary_conditional(theta: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """A draw of ``z = theta + Logistic`` conditioned on ``(z > 0) = b``, from uniforms ``v`` in (0, 1).

    ``z = theta + log u - log(1 - u)`` with ``u = 1 - p + p v`` if ``b = 1`` and ``u = (1 - p) v`` if
    ``b = 0`` (``p = sigmoid(theta)``), evaluated in log space. Differentiable in ``theta``.
    """
    log_p, log_q = F.logsigmoid(theta), F.logsigmoid(-theta)
    log_v, log_1v = torch.log(v), torch.log1p(-v)
    one = torch.logaddexp(log_q, log_p + log_v) - (log_p + log_1v)
    zero = (log_q + log_v) - torch.logaddexp(log_p, log_q + log_1v)
    return theta + torch.where(b > 0, one, zero)


class Rebar(Estimator):
    """REBAR for Categorical and Binary structures.

    Options:
        tau: base temperature; the relaxation uses ``lambda = tau * exp(log_tau_scale)`` with
            ``log_tau_scale`` learned (starts at 0), so a caller that anneals ``tau`` keeps the learned factor.
        regularizer: the relaxation of the control variate (structure default: softmax / sigmoid).
        eta: initial control-variate scale (learned).
        learn_eta, learn_tau: whether those are trained (``requires_grad``).
        num_samples: samples per item.
    """

    name = "rebar"
    supported = ("Categorical", "Binary")

    def __init__(self, tau: float = 1.0, regularizer: str | None = None, num_samples: int = 1,
                 eta: float = 1.0, learn_eta: bool = True, learn_tau: bool = True,
                 event_shape: Sequence[int] | None = None) -> None:
        super().__init__(tau=tau, regularizer=regularizer, num_samples=num_samples, event_shape=event_shape)
        self.eta = nn.Parameter(torch.tensor(float(eta)), requires_grad=bool(learn_eta))
        self.log_tau_scale = nn.Parameter(torch.zeros(()), requires_grad=bool(learn_tau))

    def extra_repr(self) -> str:
        return f"tau={self.tau}, regularizer={self.regularizer}, num_samples={self.num_samples}"

    def temperature(self) -> Tensor:
        """The relaxation temperature actually used, ``tau * exp(log_tau_scale)`` (a tensor)."""
        return self.tau * torch.exp(self.log_tau_scale)

    def residual(self, z: Tensor) -> Tensor | None:
        """Extra learned control variate ``r(z)`` per row (RELAX); None for REBAR."""
        return None

    # Eager even inside compiled code: tuning eta, the temperature and r_rho differentiates the estimate itself
    # (create_graph=True), a double backward that AOTAutograd does not support; the caller's model (which makes
    # the logits, and f's parameters) still compiles around this call.
    @torch.compiler.disable
    def estimate(self, info: StructureInfo, structure, logits: Tensor, theta: Tensor, f: Objective,
                 context: Tensor | None, generator: torch.Generator | None):
        n, batch = theta.shape[0], logits.shape[0]
        categorical = info.kind == "Categorical"
        theta_n = torch.log_softmax(theta, -1) if categorical else theta
        v1, v2 = (noise.uniform(theta.shape, dtype=theta.dtype, device=theta.device, generator=generator)
                  for _ in range(2))
        z = theta_n + (gumbel_from_uniform(v1) if categorical else logistic_from_uniform(v1))
        b = structure.argmax(z.detach()).to(theta.dtype)
        zt = (categorical_conditional if categorical else binary_conditional)(theta_n, b, v2)
        lam = self.temperature().to(theta.dtype)
        sz = structure.relax(z / lam, 1.0, self.regularizer)
        szt = structure.relax(zt / lam, 1.0, self.regularizer)
        # f(b) apart from the relaxed points: the final backward then runs through f on the n exact rows only
        fb = call_objective(f, b)
        fv = call_objective(f, torch.cat([sz, szt], 0))
        fz, fzt = fv[:n], fv[n:]
        eta = self.eta.to(theta.dtype)
        cz, czt = eta * fz, eta * fzt
        r = self.residual(torch.cat([z, zt], 0))
        if r is not None:
            cz, czt = cz + r[:n], czt + r[n:]
        stats = {"eta": self.eta.detach(), "tau": lam.detach()}
        if not (torch.is_grad_enabled() and logits.requires_grad):
            return fb.mean(), b, fb, stats
        own = [p for p in self.parameters() if p.requires_grad]
        learn = self.training and bool(own)
        logp = info.log_prob(theta, b)
        coef = fb.detach() - (czt if learn else czt.detach())
        scale = torch.full_like(fb, 1.0 / self.num_samples)
        (g,) = torch.autograd.grad((cz - czt, logp), logits, grad_outputs=(scale, coef * scale),
                                   create_graph=learn, retain_graph=True)
        # g: per-item estimate (mean over the item's samples), shape (B, *event)
        sq_norm = flat_sum(g * g).mean()
        loss = fb.mean() + (g.detach() * zero_valued(logits)).sum() / batch
        if learn:
            grads = torch.autograd.grad(sq_norm, own, retain_graph=True, allow_unused=True)
            for p, gp in zip(own, grads):
                if gp is not None:
                    loss = loss + (gp.detach() * zero_valued(p)).sum()
        stats["grad_sq_norm"] = sq_norm.detach()
        return loss, b, fb, stats


class Relax(Rebar):
    """RELAX for Categorical and Binary: REBAR's control variate plus a learned network ``r_rho(z)``.

    Options: those of :class:`Rebar`, plus ``hidden`` (width of ``r_rho``) and ``event_shape`` (required:
    ``r_rho`` reads the flattened ``z`` of ``prod(event_shape)`` entries).
    """

    name = "relax"

    def __init__(self, tau: float = 1.0, regularizer: str | None = None, num_samples: int = 1,
                 eta: float = 1.0, learn_eta: bool = True, learn_tau: bool = True,
                 event_shape: Sequence[int] | None = None, hidden: int = 64) -> None:
        if event_shape is None:
            raise ValueError("relax needs event_shape (the per-item shape of the logits) for its network")
        super().__init__(tau=tau, regularizer=regularizer, num_samples=num_samples, eta=eta,
                         learn_eta=learn_eta, learn_tau=learn_tau, event_shape=event_shape)
        dim = math.prod(self.event_shape)
        self.net = nn.Sequential(nn.Linear(dim, int(hidden)), nn.Tanh(), nn.Linear(int(hidden), 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def residual(self, z: Tensor) -> Tensor:
        w = self.net[0].weight
        return self.net(z.reshape(z.shape[0], -1).to(w.dtype)).squeeze(-1).to(z.dtype)
