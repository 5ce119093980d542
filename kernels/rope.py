"""Rotary embedding in place on the CPU, GPT-NeoX layout (kernels/cpu/rope_bf16.c), and its
torch reference."""

from __future__ import annotations

import torch

from .cpu import bf16_library, dispatch


def rope_neox_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """x (tokens, heads, head_dim); cos/sin (tokens, rotary_dim // 2) in x's dtype."""
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    x1, x2 = rot.chunk(2, dim=-1)
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s, rest), dim=-1)


def rope_applies(heads: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int) -> bool:
    """bf16 CPU tensors, heads (tokens, n, head_dim) with each token's heads contiguous, cos/sin
    (tokens, rotary_dim // 2) contiguous; any level."""
    if heads.dim() != 3 or bf16_library(heads, cos, sin) is None:
        return False
    tokens, _, head_dim = heads.shape
    return (heads.stride(2) == 1 and heads.stride(1) == head_dim and cos.is_contiguous() and sin.is_contiguous()
            and cos.shape == sin.shape == (tokens, rotary_dim // 2))


def rope_neox_bf16_(heads: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int) -> None:
    """Rotates `heads` (tokens, n, head_dim) in place where `rope_applies`: tokens at any
    stride (q and k heads side by side in the fused qkv output)."""
    assert rope_applies(heads, cos, sin, rotary_dim), (heads.dtype, heads.stride(), cos.shape)
    lib = bf16_library(heads, cos, sin)
    tokens, n, head_dim = heads.shape
    dispatch["rope"] += 1
    lib.sgl_rope_neox_bf16(heads.data_ptr(), heads.stride(0), tokens, n, head_dim, rotary_dim,
                           cos.data_ptr(), sin.data_ptr())
