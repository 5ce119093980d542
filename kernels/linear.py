"""Small-batch bf16 linear on the CPU (kernels/cpu/linear_bf16.c) and its torch reference."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .cpu import library

MAX_ROWS = 4  # up to here the kernel beats oneDNN (M = 1: ~1.5x); past it oneDNN's AMX path wins


def linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """What the kernel computes: float32 sums of bf16 products, rounded once to bf16."""
    out = x.float() @ weight.float().t()
    if bias is not None:
        out = out + bias.float()
    return out.to(torch.bfloat16)


def fast_linear_available(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear_bf16` serves this product: bf16 CPU tensors, few rows, AVX-512 BF16."""
    if x.dtype != torch.bfloat16 or weight.dtype != torch.bfloat16 or x.device.type != "cpu":
        return False
    if x.dim() != 2 or x.shape[0] > MAX_ROWS or not weight.is_contiguous():
        return False
    lib = library()
    return lib is not None and bool(lib.sgl_has_avx512_bf16())


def linear_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N), all bf16 on the CPU."""
    lib = library()
    if lib is None:
        return F.linear(x, weight, bias)
    assert x.dtype == weight.dtype == torch.bfloat16 and x.device.type == "cpu", (x.dtype, weight.dtype)
    assert x.dim() == 2 and weight.dim() == 2 and x.shape[1] == weight.shape[1], (x.shape, weight.shape)
    assert weight.is_contiguous() and (bias is None or (bias.is_contiguous() and bias.dtype == torch.bfloat16))
    x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    out = torch.empty(m, n, dtype=torch.bfloat16)
    lib.sgl_linear_bf16(x.data_ptr(), weight.data_ptr(), None if bias is None else bias.data_ptr(),
                        out.data_ptr(), m, n, k)
    return out
