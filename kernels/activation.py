"""Elementwise bf16 kernels on the CPU (kernels/cpu/activation_bf16.c): silu(gate) * up and
gelu_tanh(gate) * up for a fused gate/up tensor, and the residual add."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .cpu import Level, bf16_library, dispatch


def silu_mul_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def silu_mul_applies(gate_up: torch.Tensor) -> bool:
    """bf16 CPU rows, level avx2 or above (a vectorized exp): the portable fallback calls
    libm's expf per element and is slower than torch at prefill sizes."""
    return (gate_up.dim() == 2 and gate_up.is_contiguous() and gate_up.shape[1] % 2 == 0
            and bf16_library(gate_up, level=Level.AVX2) is not None)


def silu_mul_bf16(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up (M, 2 * I) bf16 contiguous -> (M, I)."""
    return _gated("silu_mul", gate_up)


def _gated(name: str, gate_up: torch.Tensor) -> torch.Tensor:
    assert silu_mul_applies(gate_up), (gate_up.dtype, gate_up.shape)
    lib = bf16_library(gate_up, level=Level.AVX2)
    dispatch[name] += 1
    m, width = gate_up.shape
    out = torch.empty(m, width // 2, dtype=torch.bfloat16)
    getattr(lib, f"sgl_{name}_bf16")(gate_up.data_ptr(), out.data_ptr(), m, width // 2)
    return out


def gelu_tanh_mul_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.gelu(gate, approximate="tanh") * up


def gelu_tanh_mul_bf16(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up (M, 2 * I) bf16 contiguous -> (M, I), where `silu_mul_applies` (the same rules)."""
    return _gated("gelu_tanh_mul", gate_up)


def add_applies(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Contiguous bf16 CPU tensors of one shape, level avx2 or above (the vector path)."""
    return (a.shape == b.shape and a.is_contiguous() and b.is_contiguous()
            and bf16_library(a, b, level=Level.AVX2) is not None)


def add_bf16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """a + b (torch's rounding) where `add_applies`; None, doing nothing, elsewhere."""
    if not add_applies(a, b):
        return None
    lib = bf16_library(a, b, level=Level.AVX2)
    dispatch["add"] += 1
    out = torch.empty_like(a)
    lib.sgl_add_bf16(a.data_ptr(), b.data_ptr(), out.data_ptr(), a.numel())
    return out
