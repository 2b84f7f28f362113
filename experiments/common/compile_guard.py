"""The first-contact guard of a compiled training step (docs/gpu.md, "The compile guard").

The first compiled step of a run is checked against an eager step on the same batch, parameters and noise: the
eager step runs first from a restore point (module state and random generators), everything it changed is put back,
then the compiled step runs exactly as it would without the guard. Their losses and gradients must agree within
:data:`RTOL`. The helpers here are the pieces: the restore point, one forward and backward with its outcome, the
comparison, and the names of the two ways the guard can react (warn and continue eagerly, or fail).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Relative tolerance of the compiled step's loss and gradient against the eager step's (same batch, parameters and
# noise). Why 1e-2:
# - Below it lies everything rounding can do. One step from the same parameters, compiled and eager differ only by
#   the order and fusion of float32 operations: the test suite measures ~2e-7 relative on the loss
#   (tests/experiments/test_gpu_training.py, VAE and NRI) and holds every estimator's gradients to rtol 1e-5
#   (tests/sst/test_estimators_compiled.py). On CUDA both paths run under the same TF32 setting; even a product
#   computed in TF32 by one path and in float32 by the other differs by TF32's unit roundoff, 2**-11 = 4.9e-4 per
#   operand, and sums of such errors cancel: tests/experiments/test_compile_guard.py measures one step with TF32's
#   rounding emulated against float32 on the VAE and NRI and asserts it stays below RTOL / 10.
# - Above it lies what the guard must catch: a wrong compiled gradient (NVIL's running statistics under compilation,
#   a dropped or doubled term) changes the gradient by a sizeable fraction of its norm; the tests inject a 5 %
#   change of the gradient alone (the loss value unchanged) and the guard must see it.
# - A discrete sample that flips because its logit sits on a rounding tie changes one sample's term only; a false
#   alarm costs a warning and an eager run, never a wrong result.
RTOL = 1e-2
_TINY = 1e-12  # absolute floor of the comparisons (a zero loss or gradient compared with a zero one)


class CompileMismatchError(RuntimeError):
    """The compiled step failed or disagreed with the eager step while ``trainer.compile=true`` asked for it."""


class CompileFallbackWarning(RuntimeWarning):
    """The compiled step failed or disagreed with the eager step: the run goes on eagerly (``trainer.compile=auto``)."""


@dataclass(frozen=True)
class StepOutcome:
    """One forward and backward: the loss, the logs as returned, and every parameter's gradient (flattened, float64;
    zeros for a parameter without one)."""

    loss: Tensor
    logs: dict[str, Tensor]
    gradient: Tensor


class RestorePoint:
    """The module's state (parameters and buffers, copied) and the random generators' states (torch's CPU generator,
    ``device``'s CUDA generator, Python's and NumPy's) at construction; :meth:`restore` puts them back in place
    (the tensors keep their identity, which compiled graphs guard on)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module, self.device = module, device
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.python_rng = random.getstate()
        self.numpy_rng = np.random.get_state()

    def restore(self) -> None:
        with torch.no_grad():
            self.module.load_state_dict(self.state)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)


def gradient_vector(module: torch.nn.Module) -> Tensor:
    """Every parameter's gradient, flattened into one float64 vector (zeros where a parameter has none)."""
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).double()
             for p in module.parameters()]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def forward_backward(forward: Callable[[Any, int], tuple[Tensor, dict[str, Tensor]]], module: torch.nn.Module,
                     batch: Any, step: int) -> StepOutcome:
    """Zero the gradients, run ``forward(batch, step)`` and its backward; the outcome (the gradients stay in
    ``.grad``)."""
    for p in module.parameters():
        p.grad = None
    loss, logs = forward(batch, step)
    loss.backward()
    return StepOutcome(loss, logs, gradient_vector(module))


def _relative(a: float, b: float) -> float:
    """|a - b| relative to the larger magnitude (0 when both are 0)."""
    return abs(a - b) / max(abs(a), abs(b), _TINY)


def compare(eager: StepOutcome, compiled: StepOutcome, rtol: float = RTOL) -> tuple[dict[str, float], str | None]:
    """The compiled step against the eager one: ``loss_rel`` (relative difference of the losses), ``grad_norm_rel``
    (of the gradient norms) and ``grad_rel`` (norm of the gradients' difference over the eager gradient's norm,
    which bounds ``grad_norm_rel``), and the reason they disagree (None when within ``rtol``). Non-finite values
    agree only with non-finite values."""
    le, lc = float(eager.loss.detach()), float(compiled.loss.detach())
    ne, nc = float(eager.gradient.norm()), float(compiled.gradient.norm())
    diff = float((compiled.gradient - eager.gradient).norm()) if eager.gradient.numel() else 0.0
    stats = {"loss_rel": _relative(le, lc), "grad_norm_rel": _relative(ne, nc),
             "grad_rel": diff / max(ne, _TINY), "rtol": rtol}
    finite = [math.isfinite(x) for x in (le, lc, ne, nc)]
    if finite[0] != finite[1] or finite[2] != finite[3]:
        return stats, (f"non-finite values on one side only (eager loss {le:.6g}, compiled {lc:.6g}; "
                       f"gradient norm eager {ne:.6g}, compiled {nc:.6g})")
    if not all(finite):
        return stats, None  # non-finite both ways: the eager run has the same problem, the trainer reports it
    if stats["loss_rel"] > rtol or stats["grad_rel"] > rtol:
        return stats, (f"the compiled step differs from the eager step on the same batch, parameters and noise: "
                       f"loss {lc:.6g} against {le:.6g} (relative {stats['loss_rel']:.2g}), gradient norm {nc:.6g} "
                       f"against {ne:.6g}, relative gradient difference {stats['grad_rel']:.2g} (tolerance {rtol:g})")
    return stats, None


def failure_reason(error: BaseException) -> str:
    """An exception raised while compiling or running the compiled step, in one line (its type and the first line
    of its message, at most 300 characters)."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return "compilation failed: " + (text if len(text) <= 300 else text[:297] + "...")
