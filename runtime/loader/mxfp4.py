"""MXFP4 (OCP microscaling FP4) blocks, dequantized at load: GPT-OSS stores its experts so.

A tensor of shape (..., rows, cols) is stored as `blocks` (..., rows, cols / 32, 16) uint8, two
e2m1 values a byte (low nibble first), and `scales` (..., rows, cols / 32) uint8, one shared
power-of-two exponent per 32 values (biased by 127)."""

from __future__ import annotations

import torch

# e2m1: sign, 2 exponent bits, 1 mantissa bit
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def dequantize_mxfp4(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """blocks (..., rows, groups, 16) uint8, scales (..., rows, groups) uint8 -> (..., rows, groups * 32)."""
    if blocks.dtype != torch.uint8 or blocks.shape[-1] != 16 or blocks.shape[:-1] != scales.shape:
        raise ValueError(f"MXFP4 blocks {tuple(blocks.shape)} {blocks.dtype} / scales {tuple(scales.shape)}: "
                         "expected uint8 blocks (..., groups, 16) and scales (..., groups)")
    lut = torch.tensor(E2M1, dtype=torch.float32)
    values = torch.stack([lut[(blocks & 0x0F).long()], lut[(blocks >> 4).long()]], -1)  # (..., groups, 16, 2)
    values = values.flatten(-2)  # (..., groups, 32): low nibble, high nibble, ...
    out = torch.ldexp(values, scales.to(torch.int32)[..., None] - 127)
    return out.flatten(-2).to(dtype)
