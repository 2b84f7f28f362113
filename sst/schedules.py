"""Temperature schedules: the temperature ``tau`` of a relaxation as a function of the training step.

Plain Python floats from plain Python numbers (no tensors, no torch state), so a schedule costs nothing at import
and its value can be handed to :func:`sst.sample`, ``S.relax`` or an estimator's ``tau`` each step.
"""

from __future__ import annotations

import math

__all__ = ["exponential_decay"]


def exponential_decay(step: int, tau0: float = 1.0, rate: float = 1e-4, tau_min: float = 0.5, every: int = 1) -> float:
    """Jang et al.'s (2017) annealing: ``tau = max(tau_min, tau0 * exp(-rate * t))``, ``t`` = ``step`` rounded
    down to a multiple of ``every``.

    Args:
        step: the training step (>= 0; an int, or anything ``int()`` accepts).
        tau0: the temperature at step 0.
        rate: the decay rate per step (>= 0).
        tau_min: the floor the temperature never goes below.
        every: the temperature changes only every ``every`` steps (values below 1 count as 1).

    Returns:
        The temperature at ``step``, a float.

    Example: ``exponential_decay(1000, tau0=1.0, rate=1e-4, tau_min=0.5, every=1000)`` is ``exp(-0.1)``; the
    discrete VAE (``experiments/vae``) anneals its temperature with this schedule.
    """
    period = max(1, int(every))
    t = (int(step) // period) * period
    return max(float(tau_min), float(tau0) * math.exp(-float(rate) * t))
