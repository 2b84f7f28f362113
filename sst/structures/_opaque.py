"""The solvers that read tensor values as custom operators, for code that ``torch.compile`` traces or ``torch.func``
transforms (:func:`sst.validation.traced`).

Three solvers make decisions on the values of their input that neither tracer can follow: the Hungarian algorithm
(SciPy on the CPU), Chu-Liu/Edmonds (NumPy on the CPU) and Sinkhorn's convergence loop (one host sync per Newton
round). Under a tracer they run as ``torch.library`` custom operators: ``torch.compile`` sees one opaque node with
a known output shape (``fullgraph=True`` holds, ``dynamic=True`` adds no recompiles) and runs the eager solver on
real tensors; ``torch.func.vmap`` folds its batch dimension into the solver's leading batch dimension (the
solvers are batched already), so a vmapped call is one batched call. Outside a tracer the structures call their
solvers directly (nothing here runs).

Spanning trees need no operator: their argmax (Prim) is tensor code with a fixed number of steps, and their exact
marginals under a tracer are the log-space elimination differentiated by ``torch.func.grad``
(:func:`sst.structures._laplacian.eliminate_marginals`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["max_assignment", "max_arborescence", "sinkhorn_plan"]


def _batch_first(x: Tensor, dim: int | None) -> Tensor:
    """``x`` with vmap's batch dimension ``dim`` moved to the front (it is one more leading batch dimension of
    the solver); ``dim`` None: unbatched, returned as is."""
    return x if dim is None else x.movedim(dim, 0)


def _out_dim(dim: int | None) -> int | None:
    """The output's batch dimension: the front, where :func:`_batch_first` put it (None: unbatched)."""
    return None if dim is None else 0


# argmax solvers (no gradient: the structures call them on detached weights) ------------------------------------

@torch.library.custom_op("sst::max_assignment", mutates_args=())
def max_assignment(w: Tensor) -> Tensor:
    """The maximum-weight permutation matrix of each ``(n, n)`` matrix: ``(..., n, n) -> (..., n, n)``
    (:meth:`sst.Permutation.argmax`'s eager solver)."""
    from sst.structures.permutation import Permutation
    return Permutation()._argmax(w)


@torch.library.custom_op("sst::max_arborescence", mutates_args=())
def max_arborescence(w: Tensor, root: int) -> Tensor:
    """The maximum-weight arborescence rooted at ``root``: ``(..., n, n) -> (..., n, n)``
    (:meth:`sst.Arborescence.argmax`'s eager solver)."""
    from sst.structures.arborescence import Arborescence
    return Arborescence(root=root)._argmax(w)


@max_assignment.register_fake
def _(w: Tensor) -> Tensor:
    return torch.empty_like(w)


@max_arborescence.register_fake
def _(w: Tensor, root: int) -> Tensor:
    return torch.empty_like(w)


@torch.library.register_vmap("sst::max_assignment")
def _(info: Any, in_dims: tuple, w: Tensor) -> tuple[Tensor, int | None]:
    return max_assignment(_batch_first(w, in_dims[0])), _out_dim(in_dims[0])


@torch.library.register_vmap("sst::max_arborescence")
def _(info: Any, in_dims: tuple, w: Tensor, root: int) -> tuple[Tensor, int | None]:
    return max_arborescence(_batch_first(w, in_dims[0]), root), _out_dim(in_dims[0])


# Sinkhorn: the plan by the eager solver (no gradient: sst.structures._sinkhorn differentiates it) -----------

@torch.library.custom_op("sst::sinkhorn_plan", mutates_args=())
def sinkhorn_plan(s: Tensor, tol: float, max_iter: int) -> Tensor:
    """The doubly stochastic ``exp(s + f 1^T + 1 g^T)`` of scores ``s`` (..., n, n), solved eagerly (it warns as
    :func:`sst.structures._sinkhorn.sinkhorn` does); no gradient (``_SinkhornTraced`` gives it one)."""
    from sst.structures._sinkhorn import solve_plan
    return solve_plan(s, tol, max_iter)[0]


@sinkhorn_plan.register_fake
def _(s: Tensor, tol: float, max_iter: int) -> Tensor:
    return torch.empty_like(s)


@torch.library.register_vmap("sst::sinkhorn_plan")
def _(info: Any, in_dims: tuple, s: Tensor, tol: float, max_iter: int) -> tuple[Tensor, int | None]:
    return sinkhorn_plan(_batch_first(s, in_dims[0]), tol, max_iter), _out_dim(in_dims[0])
