"""sst: stochastic softmax tricks.

``S.argmax(w)`` is the exact solver of a structure (stochastic argmax trick), ``S.relax(w, tau, regularizer)``
its relaxation (stochastic softmax trick); ``sst.sample(S, theta, tau, hard=...)`` perturbs and relaxes.
See DESIGN.md ("Library contract").

``sst.distributions`` (the structures as ``torch.distributions``: the exact Gibbs law, the softmax trick),
``sst.estimators`` and ``sst.diagnostics`` are loaded on first use (``sst.estimators``, ``from sst import
estimators``): the estimators mark functions with ``torch.compiler.disable``, which imports ``torch._dynamo``
(a second or more), so ``import sst`` leaves it, and numba, to the code that needs them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from sst import noise, schedules
from sst.sample import sample, straight_through
from sst.structures import (
    Arborescence,
    Binary,
    Categorical,
    CorrelatedTopK,
    Permutation,
    SpanningTree,
    Structure,
    TopK,
)
from sst.structures._sinkhorn import SinkhornConvergenceWarning
from sst.validation import checks

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load on first use (__getattr__)
    from sst import diagnostics, distributions, estimators

__version__ = "0.1.0"  # the one source of the version: pyproject.toml reads it (dynamic = ["version"])
LAZY_SUBMODULES = ("diagnostics", "distributions", "estimators")

__all__ = [
    "__version__", "diagnostics", "distributions", "estimators", "noise", "schedules", "sample", "straight_through",
    "checks",
    "Structure", "Categorical", "Binary", "TopK", "CorrelatedTopK", "SpanningTree", "Arborescence", "Permutation",
    "SinkhornConvergenceWarning",
]


def __getattr__(name: str) -> ModuleType:
    """``sst.estimators``, ``sst.diagnostics`` and ``sst.distributions``, imported on first access (PEP 562)."""
    if name in LAZY_SUBMODULES:
        return importlib.import_module(f"sst.{name}")  # the import also binds it as an attribute of sst
    raise AttributeError(f"module 'sst' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY_SUBMODULES))
