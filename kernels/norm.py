"""RMS norm of bf16 rows on the CPU (kernels/cpu/norm_bf16.c) and its torch references: Llama's
and Gemma's (1 + w, one rounding)."""

from __future__ import annotations

import torch

from .cpu import bf16_library, dispatch


def rmsnorm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm: float32 inside, the normalized rows rounded to x's dtype
    before the weight multiplies them."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def rmsnorm_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """bf16 CPU rows with unit stride inside, at any level (the portable loop beats the eight
    torch ops it replaces)."""
    return (x.dim() >= 1 and x.stride(-1) == 1 and weight.is_contiguous() and weight.shape == x.shape[-1:]
            and bf16_library(x, weight) is not None)


def rmsnorm_bf16(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x (..., D) bf16, rows may be strided -> (..., D) contiguous."""
    return _rmsnorm(x, weight, eps, None)


def _rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, offset: float | None) -> torch.Tensor:
    """Llama's norm (offset None) or Gemma's (offset + w) by the C kernel."""
    assert rmsnorm_applies(x, weight), (x.dtype, x.stride())
    lib = bf16_library(x, weight)
    dispatch["rmsnorm"] += 1
    d = x.shape[-1]
    rows = x if x.dim() == 2 else x.reshape(-1, d)
    out = torch.empty(rows.shape, dtype=torch.bfloat16)
    args = (rows.data_ptr(), rows.stride(0) if rows.shape[0] > 1 else d, weight.data_ptr(), out.data_ptr(),
            rows.shape[0], d, eps)
    if offset is None:
        lib.sgl_rmsnorm_bf16(*args)
    else:
        lib.sgl_rmsnorm_offset_bf16(*args, offset)
    return out.view(x.shape)


def rmsnorm_offset_reference(x: torch.Tensor, weight: torch.Tensor, eps: float, offset: float) -> torch.Tensor:
    """transformers' GemmaRMSNorm: float32 throughout, (offset + w) multiplies, one rounding."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * (offset + weight.float())).to(x.dtype)


def rmsnorm_offset_bf16(x: torch.Tensor, weight: torch.Tensor, eps: float, offset: float) -> torch.Tensor:
    """Gemma's norm of x (..., D) bf16 (rows may be strided), where `rmsnorm_applies`."""
    return _rmsnorm(x, weight, eps, offset)
