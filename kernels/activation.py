"""Elementwise bf16 kernels on the CPU (kernels/cpu/activation_bf16.c): silu(gate) * up for a
fused gate/up tensor, and the residual add."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .cpu import bf16_library


def silu_mul_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def silu_mul_bf16_available(gate_up: torch.Tensor) -> bool:
    """bf16 CPU rows, on a CPU with AVX-512 BF16: the portable fallback calls libm's expf per
    element and is slower than torch at prefill sizes."""
    return gate_up.dim() == 2 and gate_up.is_contiguous() and bf16_library(gate_up, vector=True) is not None


def silu_mul_bf16(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up (M, 2 * I) bf16 contiguous -> (M, I)."""
    lib = bf16_library(gate_up, vector=True)
    assert lib is not None and silu_mul_bf16_available(gate_up), (gate_up.dtype, gate_up.shape)
    m, width = gate_up.shape
    out = torch.empty(m, width // 2, dtype=torch.bfloat16)
    lib.sgl_silu_mul_bf16(gate_up.data_ptr(), out.data_ptr(), m, width // 2)
    return out


def add_bf16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """a + b for contiguous bf16 CPU tensors of one shape (torch's rounding); None, doing
    nothing, for anything else or where the AVX-512 path is not built."""
    lib = bf16_library(a, b, vector=True)
    if lib is None or a.shape != b.shape or not a.is_contiguous() or not b.is_contiguous():
        return None
    out = torch.empty_like(a)
    lib.sgl_add_bf16(a.data_ptr(), b.data_ptr(), out.data_ptr(), a.numel())
    return out
