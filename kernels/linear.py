"""Small-batch bf16 linear on the CPU (kernels/cpu/linear_bf16.c) and its torch reference."""

from __future__ import annotations

import functools

import torch

from .cpu import bf16_library, tile_path, vector_path

# Rows up to which the kernel beats oneDNN: with the tile unit (AMX) one pass over the weights
# serves 32 rows (M = 1: 14 ms against 21 for 30 layers of SmolLM2-135M; M = 32: 23 against
# 24); the dot-product loop without it is compute-bound past 4 rows.
TILE_MAX_ROWS, DOT_MAX_ROWS = 32, 4


@functools.cache
def max_rows(in_features: int) -> int:
    """Rows the kernel takes for a weight with this many columns (the tile path needs a multiple
    of 32); the same kernel serves every row count up to it, so a row's result never depends on
    the other rows in the product. Cached: it is asked on every linear call."""
    if not vector_path():
        return 0
    return TILE_MAX_ROWS if in_features % 32 == 0 and tile_path() else DOT_MAX_ROWS


def linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """What the kernel computes: float32 sums of bf16 products, rounded once to bf16."""
    out = x.float() @ weight.float().t()
    if bias is not None:
        out = out + bias.float()
    return out.to(torch.bfloat16)


def fast_linear_available(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear_bf16` serves this product: bf16 CPU tensors, few rows, AVX-512 BF16."""
    return (x.dim() == 2 and x.shape[0] <= max_rows(x.shape[1]) and weight.is_contiguous()
            and bf16_library(x, weight) is not None)


def linear_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N), all bf16 on the CPU; M up to
    `max_rows(K)` (more rows work, in passes of 32 or at the dot-product loop's pace)."""
    lib = bf16_library(x, weight, vector=True)
    assert lib is not None, (x.dtype, weight.dtype, x.device)
    assert x.dim() == 2 and weight.dim() == 2 and x.shape[1] == weight.shape[1], (x.shape, weight.shape)
    assert weight.is_contiguous() and (bias is None or (bias.is_contiguous() and bias.dtype == torch.bfloat16))
    x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    out = torch.empty(m, n, dtype=torch.bfloat16)
    packed = torch.empty((m + 31) // 32 * 32 * k, dtype=torch.bfloat16)  # x in the tile kernel's layout
    lib.sgl_linear_rows_bf16(x.data_ptr(), weight.data_ptr(), None if bias is None else bias.data_ptr(),
                             out.data_ptr(), m, n, k, packed.data_ptr())
    return out
