"""Which implementation runs a solver: compiled CPU kernels (numba, optional) or PyTorch.

``backend="auto"`` picks the numba kernels of :mod:`sst.structures._numba_kernels` for CPU tensors when numba is
installed, else PyTorch; ``"torch"`` always PyTorch (the reference the tests compare the kernels against);
``"numba"`` requires numba and a CPU tensor. Under ``torch.compile`` or a ``torch.func`` transform
(:func:`sst.validation.traced`) every backend takes the PyTorch path (a numba kernel reads the tensor's memory,
which a fake or batched tensor does not have).
"""

from __future__ import annotations

import functools
import warnings
from types import ModuleType

from torch import Tensor

from sst.validation import traced

BACKENDS = ("auto", "torch", "numba")


@functools.cache
def numba_kernels() -> ModuleType | None:
    """The compiled CPU kernels (compiled, or loaded from numba's on-disk cache, on first use), or None when
    numba is not installed."""
    try:
        from sst.structures import _numba_kernels
    except ImportError:
        return None
    except Exception as err:  # numba present but unusable here (e.g. no writable cache location): fall back
        warnings.warn(f"sst: numba kernels unavailable ({err!r}); using the PyTorch path", RuntimeWarning,
                      stacklevel=2)
        return None
    return _numba_kernels


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def kernels_for(x: Tensor, backend: str = "auto") -> ModuleType | None:
    """The kernels module to use for tensor ``x`` under ``backend``, or None for the PyTorch path."""
    if check_backend(backend) == "torch" or traced():  # compiled / transformed code: the PyTorch path
        return None
    kern = numba_kernels() if x.device.type == "cpu" else None
    if backend == "numba" and kern is None:
        reason = "no numba installed (pip install numba)" if numba_kernels() is None else f"device {x.device}"
        raise ValueError(f"backend='numba' needs numba and a CPU tensor, got {reason}")
    return kern
