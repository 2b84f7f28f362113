"""sst: stochastic softmax tricks.

``S.argmax(w)`` is the exact solver of a structure (stochastic argmax trick), ``S.relax(w, tau, regularizer)``
its relaxation (stochastic softmax trick); ``sst.sample(S, theta, tau, hard=...)`` perturbs and relaxes.
See DESIGN.md ("Library contract").
"""

from sst import diagnostics, estimators, noise
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

__all__ = [
    "diagnostics", "estimators", "noise", "sample", "straight_through", "checks", "Structure",
    "Categorical", "Binary", "TopK", "CorrelatedTopK", "SpanningTree", "Arborescence", "Permutation",
    "SinkhornConvergenceWarning",
]
