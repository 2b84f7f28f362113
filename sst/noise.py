"""Gumbel and Logistic noise that can never be infinite or NaN.

Both are transforms of a uniform draw clamped to ``[tiny, 1 - eps]`` of the dtype (``torch.finfo``), so
``log(u)`` and ``log(1 - u)`` are always finite: in float32 a Gumbel draw lies in about [-4.5, 15.9] and a
Logistic draw in about [-87.3, 15.9]. Half-precision dtypes (float16, bfloat16) are drawn and transformed in
float32 and rounded at the end: drawn in bfloat16 itself, a Gumbel draw would span only [-4.5, 4.8] with 532
distinct values (issue #51 D5), so the far tails that decide rare outcomes would be missing. Every sampler takes
an optional ``torch.Generator`` (on the same device as the output) and never names a device itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sst.validation import traced

__all__ = ["uniform", "gumbel", "logistic", "gumbel_like", "logistic_like", "draw_dtype"]

_Shape = torch.Size | tuple[int, ...] | list[int]


_HALF = (torch.float16, torch.bfloat16)


def draw_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype noise for ``dtype`` is drawn and transformed in: float32 for float16 / bfloat16, else ``dtype``."""
    return torch.float32 if dtype in _HALF else dtype


def uniform(shape: _Shape, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
            generator: torch.Generator | None = None) -> Tensor:
    """U(0, 1) draws of ``shape``, clamped to ``[finfo.tiny, 1 - finfo.eps]`` of ``dtype`` so both logs are
    finite (half precision: drawn in float32, then rounded)."""
    dtype = dtype or torch.get_default_dtype()
    finfo = torch.finfo(dtype)
    # generator=None is not passed on: torch.compile with symbolic shapes (dynamic=True) cannot trace the
    # generator overload of torch.rand
    kw = {} if generator is None else {"generator": generator}
    u = torch.rand(shape, dtype=draw_dtype(dtype), device=device, **kw).to(dtype)
    if traced():  # torch.func.vmap has no batching rule for the in-place clamp
        return u.clamp(finfo.tiny, 1.0 - finfo.eps)
    return u.clamp_(finfo.tiny, 1.0 - finfo.eps)


def gumbel(shape: _Shape, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel(0, 1) draws ``-log(-log u)`` of ``shape``; always finite (half precision: computed in
    float32, then rounded)."""
    dtype = dtype or torch.get_default_dtype()
    u = uniform(shape, dtype=draw_dtype(dtype), device=device, generator=generator)
    return (-torch.log(-torch.log(u))).to(dtype)


def logistic(shape: _Shape, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """Standard Logistic(0, 1) draws ``log u - log(1 - u)`` of ``shape``; always finite (half precision: computed
    in float32, then rounded)."""
    dtype = dtype or torch.get_default_dtype()
    u = uniform(shape, dtype=draw_dtype(dtype), device=device, generator=generator)
    return (torch.log(u) - torch.log1p(-u)).to(dtype)


def gumbel_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Gumbel(0, 1) noise with the shape, dtype and device of ``x``."""
    return gumbel(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def logistic_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Logistic(0, 1) noise with the shape, dtype and device of ``x``."""
    return logistic(x.shape, dtype=x.dtype, device=x.device, generator=generator)
