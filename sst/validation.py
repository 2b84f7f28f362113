"""Input checks shared by every structure, and the switch that turns the costly ones off.

Cheap checks (shapes, ``k``, a Python ``tau``, the regularizer's name) always run. The checks that read tensor
values (NaN in ``w``, symmetry of spanning-tree weights, a tensor ``tau`` > 0) cost one host-device sync per call;
they run unless switched off for a block of code with ``sst.checks(False)``::

    with sst.checks(False):        # hot training loop: no syncs in relax / argmax
        x = sst.sample(S, theta, tau=0.5)

The switch is a :mod:`contextvars` variable (thread- and task-local, restored on exit); there is no other
global mutable state.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["checks", "checks_enabled", "traced", "static_int", "check_floating", "check_weights"]

_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("sst_checks", default=True)


@contextmanager
def checks(enabled: bool = True) -> Iterator[None]:
    """Context manager: run (``True``, the default) or skip (``False``) the value checks inside the block."""
    if torch.compiler.is_compiling():  # traced code has no value checks (see checks_enabled)
        yield
        return
    token = _CHECKS.set(bool(enabled))
    try:
        yield
    finally:
        _CHECKS.reset(token)


def traced() -> bool:
    """Whether the code runs under ``torch.compile`` or a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``,
    ...): there a tensor's values are not at hand (a fake or batched tensor), so code that reads them (a value
    check, a branch on data, a compiled CPU kernel) must take its value-free path."""
    return torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is not None


def static_int(v: int) -> int:
    """``v`` unchanged; under ``torch.compile``, also made a constant of the traced graph. With ``dynamic=True``
    dynamo traces the int attributes of an object passed to the compiled function (a structure's ``k`` or
    ``root``) as symbols, and ``int()`` keeps them symbolic; with torch 2.13 a symbolic ``k`` gave wrong
    k-subset marginals and gradients. Iterating ``range(v)`` makes dynamo guard on v's value, which turns the
    symbol into that constant everywhere in the graph (a structure with another ``k`` recompiles)."""
    if not torch.compiler.is_compiling():
        return v
    sign = -1 if v < 0 else 1  # a negative root (Arborescence(root=-1)): range(v) would be empty
    count = 0
    for _ in range(sign * v):
        count += 1
    return sign * count


def checks_enabled() -> bool:
    """Whether value checks (those that sync with the device) are on in the current context. Off in code traced by
    ``torch.compile`` or transformed by ``torch.func`` (:func:`traced`): a check there would be a host sync and a
    graph break, or data-dependent control flow that ``vmap`` refuses."""
    if traced():
        return False
    return _CHECKS.get()


def check_tau(tau: float | Tensor) -> float | Tensor:
    """``tau`` must be > 0 (a number, or a tensor whose entries are all > 0). Returns it unchanged."""
    if isinstance(tau, Tensor):
        if checks_enabled() and not bool((tau > 0).all()):
            raise ValueError("tau must be > 0 everywhere; got a tensor with entries <= 0 or NaN")
        return tau
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"tau must be a positive number, got {tau!r}") from None
    if not t > 0 or t == float("inf"):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    return t


def check_regularizer(regularizer: str | None, legal: Sequence[str], owner: str) -> str:
    """Resolve ``None`` to the default (first legal name); reject unknown names, listing the legal ones."""
    if regularizer is None:
        return legal[0]
    if regularizer not in legal:
        raise ValueError(f"regularizer must be one of {', '.join(map(repr, legal))} for {owner}, got {regularizer!r}")
    return regularizer


def check_floating(w: object, name: str = "w") -> None:
    """``w`` must be a floating-point tensor (no sync)."""
    if not isinstance(w, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (e.g. float32 or float64), got dtype {w.dtype}")


def check_weights(w: Tensor, name: str = "w", allow_neg_inf: bool = False, valid: Tensor | None = None,
                  extra: tuple[Tensor, str] | None = None) -> None:
    """``w`` must be a floating tensor; with checks on (one sync) it must not contain NaN or +inf, nor -inf unless
    ``allow_neg_inf``. ``valid`` (a bool mask broadcastable to ``w``) limits the infinity checks to the entries a
    structure reads (e.g. the off-diagonal of a graph); NaN is rejected everywhere. ``extra`` = (bool tensor, message):
    a structure's own condition on the values, read in the same sync; any True entry raises ValueError(message)."""
    check_floating(w, name)
    if not checks_enabled():
        return
    inf = torch.isposinf(w) if allow_neg_inf else torch.isinf(w)
    if valid is not None:
        inf = inf & valid
    flag = (torch.isnan(w) | inf).any()
    if extra is not None:
        flag = flag | extra[0].any()
    if not bool(flag):  # the one sync
        return
    if bool(torch.isnan(w).any()):
        raise ValueError(f"{name} contains NaN")
    if bool((torch.isposinf(w) if valid is None else torch.isposinf(w) & valid).any()):
        raise ValueError(f"{name} contains +inf; weights must be finite (or -inf where a structure allows it)")
    if bool(inf.any()):
        raise ValueError(f"{name} contains -inf, which this structure cannot honour as 'never selected'; pass "
                         "finite weights")
    if extra is not None:
        raise ValueError(extra[1])


def check_k(k: int, n: int | None = None, name: str = "k") -> int:
    """``k`` must be an integer >= 1, and <= n when n is given."""
    if isinstance(k, bool) or int(k) != k:
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    if n is not None and k > n:
        raise ValueError(f"{name} must be <= n = {n} (the number of items), got {name}={k}")
    return k
