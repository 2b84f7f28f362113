"""Float32 matmul precision for a run: ``trainer.tf32`` = true | false | emulate.

``true`` lets CUDA float32 matmuls and convolutions use TF32 tensor cores (no effect on CPU); ``false`` keeps them
in full float32; ``emulate`` reproduces TF32's rounding on any device, CPU included, so that a run's sensitivity
to TF32 can be measured without a GPU that has it: every float32 operand of a matrix product or convolution
(forward and backward) is rounded to TF32's 10 explicit mantissa bits (round half to even) before the product,
which then runs in float32. That is the arithmetic of a TF32 tensor-core GEMM up to the order of its float32
accumulation. What it does not model: which products cuBLAS would in fact run on tensor cores (it rounds all of
them, the worst case), and any TF32 use inside linear-algebra routines (inverse, determinant), which it leaves in
float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from experiments.common.config import TF32_CHOICES, tf32_setting

__all__ = ["TF32_CHOICES", "EmulatedTF32", "round_to_tf32", "tf32_matmuls", "tf32_setting"]

_aten = torch.ops.aten
# op -> positions of the operands that a TF32 GEMM or convolution reads in TF32 (the rest, e.g. addmm's bias, are
# added in float32 by the epilogue)
_OPERANDS: dict[Any, tuple[int, ...]] = {
    _aten.mm.default: (0, 1),
    _aten.bmm.default: (0, 1),
    _aten.addmm.default: (1, 2),
    _aten.baddbmm.default: (1, 2),
    _aten.addbmm.default: (1, 2),
    _aten._addmm_activation.default: (1, 2),
    _aten.convolution.default: (0, 1),
    _aten.convolution_backward.default: (0, 1, 2),
}


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """``x`` (any shape) with each float32 value rounded to TF32 (8 exponent bits, 10 explicit mantissa bits),
    half to even, returned as float32; other dtypes are returned unchanged. Infinities and NaNs stay what they
    are; a value within half a TF32 step of the float32 maximum rounds to infinity, as the format does."""
    if x.dtype != torch.float32:
        return x
    bits = x.contiguous().view(torch.int32)
    keep_nan = torch.isnan(x)
    rounded = (bits + (0x0FFF + ((bits >> 13) & 1))) & -0x2000  # -0x2000 == ~0x1FFF: clear the 13 low bits
    out = rounded.view(torch.float32)
    return torch.where(keep_nan, x, out)


class EmulatedTF32(TorchDispatchMode):
    """A dispatch mode that rounds the float32 operands of matrix products and convolutions to TF32
    (:func:`round_to_tf32`) before running them; everything else runs unchanged. Backward products are rounded
    too (autograd carries the mode into the backward pass). Use as a context manager; :attr:`calls` counts the
    products it rounded."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        positions = _OPERANDS.get(func)
        if positions is not None:
            args = tuple(round_to_tf32(a) if i in positions and isinstance(a, torch.Tensor) else a
                         for i, a in enumerate(args))
            self.calls += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def tf32_matmuls(setting: Any, device: torch.device) -> Iterator[None]:
    """Run the block with ``trainer.tf32`` = ``setting`` (true | false | emulate, see the module) on ``device``,
    then restore torch's previous matmul settings (no global state leaks out of a run). ``true`` and ``false``
    change nothing on CPU; ``emulate`` turns real TF32 off on CUDA so that the emulated rounding is the only one."""
    mode = tf32_setting(setting)
    if device.type == "cuda":
        precision, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
        torch.set_float32_matmul_precision("high" if mode == "true" else "highest")
        torch.backends.cudnn.allow_tf32 = mode == "true"
    try:
        if mode == "emulate":
            with EmulatedTF32():
                yield
        else:
            yield
    finally:
        if device.type == "cuda":
            torch.set_float32_matmul_precision(precision)
            torch.backends.cudnn.allow_tf32 = cudnn
