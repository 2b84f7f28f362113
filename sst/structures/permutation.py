"""Permutation matrices: the Hungarian algorithm (argmax) and Gumbel-Sinkhorn (relax)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from sst.structures import _opaque
from sst.structures._assignment import max_assignment
from sst.structures._sinkhorn import sinkhorn
from sst.structures.base import Structure
from sst.validation import traced

__all__ = ["Permutation"]


def _scipy_assignment() -> Callable[..., tuple[np.ndarray, np.ndarray]] | None:
    """``scipy.optimize.linear_sum_assignment``, or None when SciPy is not installed (SciPy is optional)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return None
    return linear_sum_assignment


class Permutation(Structure):
    """n x n permutation matrices: ``w`` and ``x`` have shape (..., n, n); ``x[i, j] = 1`` when i is sent to j.

    - argmax: the assignment maximising ``sum_ij w_ij x_ij``, exact (Hungarian algorithm, float64 arithmetic).
      CPU tensors with SciPy installed: ``scipy.optimize.linear_sum_assignment``, one matrix at a time (a Python
      loop over the flattened batch). Other devices, or no SciPy: a batched shortest-augmenting-path Hungarian in
      PyTorch (:mod:`sst.structures._assignment`) on ``w``'s device, no host round trip or sync on a device
      (``n (n + 1) / 2`` vectorised steps; on the CPU 17 to 31 times slower than SciPy at 128 matrices of
      n = 10 to 50, docs/benchmarks.md). SciPy is optional;
    - ``entropy``: the doubly stochastic ``P = argmax <w, P> - tau sum P log P``, i.e.
      ``log P = w / tau + a_i + b_j``, by log-space Sinkhorn with epsilon scaling and Newton polishing
      (:mod:`sst.structures._sinkhorn`, float64 inside), until the row and column sums are within ``tol`` of 1
      (one host sync per round, at most ``max_iter`` Newton rounds); converges at tau >= 0.05 for n <= 50 with
      N(0, 1) weights (docs/library.md). When it does not, it warns with
      :class:`sst.SinkhornConvergenceWarning` (a ``RuntimeWarning``) naming the residual; turn that into an error
      with ``warnings.simplefilter("error", sst.SinkhornConvergenceWarning)``. Gradients by implicit
      differentiation at the fixed point (exact when converged; the backward warns again otherwise), not by
      unrolling.

    Args:
        tol: tolerance on max |row or column sum - 1| (default 1e-10 in float64, 1e-5 otherwise).
        max_iter: at most this many Newton rounds (each one Newton step and one Sinkhorn sweep).
    """

    regularizers = ("entropy",)
    event_ndim = 2
    kind = "Permutation"

    def __init__(self, tol: float | None = None, max_iter: int = 200) -> None:
        if tol is not None and not float(tol) > 0:
            raise ValueError(f"tol must be None or a number > 0, got {tol!r}")
        if isinstance(max_iter, bool) or int(max_iter) != max_iter or int(max_iter) < 0:
            raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
        self.tol = tol
        self.max_iter = int(max_iter)

    def _check_shape(self, w: Tensor, name: str = "w") -> None:
        super()._check_shape(w, name)
        if w.shape[-1] != w.shape[-2]:
            raise ValueError(f"{name} must be square in its last two dimensions (..., n, n), got shape "
                             f"{tuple(w.shape)}")

    def _argmax(self, w: Tensor) -> Tensor:
        n = w.shape[-1]
        if traced():  # torch.compile / torch.func: the same solver as an opaque operator
            return _opaque.max_assignment(w)
        solve = _scipy_assignment() if w.device.type == "cpu" else None
        if solve is None:  # a device tensor, or no SciPy: the batched PyTorch Hungarian on w's device
            return torch.nn.functional.one_hot(max_assignment(w), n).to(w.dtype)
        flat = np.nan_to_num(w.reshape(-1, n, n).to("cpu", torch.float64).numpy(), nan=-1e300, posinf=1e300,
                             neginf=-1e300)
        x = np.zeros(flat.shape, dtype=np.float64)
        for b, m in enumerate(flat):
            rows, cols = solve(m, maximize=True)
            x[b, rows, cols] = 1.0
        return torch.from_numpy(x).to(dtype=w.dtype).reshape(w.shape)

    def _relax(self, w: Tensor, tau: float | Tensor, regularizer: str) -> Tensor:
        return sinkhorn(w / tau, self.tol, self.max_iter)

    def enumerate(self, n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """All ``n!`` permutation matrices: ``(n!, n, n)``."""
        n = int(n)
        eye = torch.eye(n, dtype=dtype or torch.get_default_dtype(), device=device)
        perms = list(itertools.permutations(range(n)))
        return eye[torch.tensor(perms, dtype=torch.long, device=device)].reshape(len(perms), n, n)
