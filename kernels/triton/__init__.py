"""Triton kernels for GPUs, each beside a plain-torch reference of the same function.

Every module here holds, for one function: the `*_reference` in torch (the golden answer, any
device), the `@triton.jit` kernel, and a thin wrapper that checks dtypes, shapes and strides
before the launch. On a machine without CUDA the kernels run under Triton's interpreter
(`TRITON_INTERPRET=1`, set before this package is imported) on CPU tensors: that is how the
tests check them here; speed only means something on a GPU (benchmark/bench_triton.py).

Layouts read (the same as runtime/cache/):
- a KV pool per layer: k (slots, kv_heads, head_dim), v (slots, kv_heads, v_head_dim); slot 0
  holds zeros and is never handed out;
- the request-to-token table (rows, max_context) int64: column i of row r is the slot of
  request r's i-th token.
"""

from __future__ import annotations

import os

import torch

try:  # triton is a Linux dependency (the version torch==2.13.0 itself pins); absent elsewhere
    import triton  # noqa: F401

    TRITON_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where triton is not installed
    TRITON_AVAILABLE = False


def interpreting() -> bool:
    """Whether kernels run under Triton's interpreter (on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_usable(*tensors: torch.Tensor) -> bool:
    """Whether a Triton kernel can run on these tensors here: on CUDA when compiled, or anywhere
    under the interpreter."""
    if not TRITON_AVAILABLE:
        return False
    if interpreting():
        return True
    return all(t.is_cuda for t in tensors)


def upcast_dots(dtype: torch.dtype) -> bool:
    """NOTE: Triton 3.7's interpreter multiplies bfloat16 `tl.dot` operands wrongly (it reads the
    raw bits); the kernels then take a constexpr flag that turns their operands to float32 first,
    after the same rounding to bfloat16 a GPU does."""
    return interpreting() and dtype == torch.bfloat16


def check(cond: bool, what: str) -> None:
    """The wrappers' input check: raises ValueError naming the field and what it must be."""
    if not cond:
        raise ValueError(what)


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())
