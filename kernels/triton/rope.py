"""Rotary embedding of q and k in place, from positions and a (max_position, rotary_dim) cache
of [cos | sin] (float32) that stays on the device: no per-step gather of cos/sin on the host.
GPT-NeoX layout (rotate halves) or interleaved (adjacent pairs, GPT-J); the columns past
rotary_dim pass through."""

from __future__ import annotations

import torch

from . import check, next_pow2

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


def rope_reference(x: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor, rotary_dim: int,
                   interleaved: bool = False) -> torch.Tensor:
    """x (tokens, heads, head_dim) -> rotated copy; float32 inside, rounded once."""
    half = rotary_dim // 2
    cos = cos_sin[positions, :half][:, None, :]  # (tokens, 1, half)
    sin = cos_sin[positions, half:rotary_dim][:, None, :]
    rot = x[..., :rotary_dim].float()
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    else:
        x1, x2 = rot[..., :half], rot[..., half:]
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return torch.cat((out.to(x.dtype), x[..., rotary_dim:]), dim=-1)


if triton is not None:

    @triton.jit
    def _rope_kernel(X, Positions, CosSin, stride_xt, stride_xh, stride_cs, heads,
                     HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr,
                     INTERLEAVED: tl.constexpr):
        t = tl.program_id(0)
        pos = tl.load(Positions + t)
        offs_c = tl.arange(0, BLOCK_HALF)
        c_valid = offs_c < HALF
        cos = tl.load(CosSin + pos * stride_cs + offs_c, mask=c_valid, other=0.0)[None, :]
        sin = tl.load(CosSin + pos * stride_cs + HALF + offs_c, mask=c_valid, other=0.0)[None, :]
        if INTERLEAVED:
            first, second = 2 * offs_c, 2 * offs_c + 1
        else:
            first, second = offs_c, HALF + offs_c
        for h0 in range(0, heads, BLOCK_H):
            offs_h = h0 + tl.arange(0, BLOCK_H)
            mask = (offs_h < heads)[:, None] & c_valid[None, :]
            base = X + t * stride_xt + offs_h[:, None] * stride_xh
            x1 = tl.load(base + first[None, :], mask=mask, other=0.0).to(tl.float32)
            x2 = tl.load(base + second[None, :], mask=mask, other=0.0).to(tl.float32)
            tl.store(base + first[None, :], (x1 * cos - x2 * sin).to(X.dtype.element_ty), mask=mask)
            tl.store(base + second[None, :], (x2 * cos + x1 * sin).to(X.dtype.element_ty), mask=mask)


def rope_(x: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor, rotary_dim: int,
          interleaved: bool = False) -> torch.Tensor:
    """Rotates x (tokens, heads, head_dim) in place (tokens at any stride, each head's columns
    contiguous: q and k may be views of one fused qkv output; call once for each) and returns it."""
    check(x.dim() == 3 and x.stride(2) == 1, f"x must be (tokens, heads, head_dim) with head_dim contiguous, got strides {x.stride()}")
    check(rotary_dim % 2 == 0 and 0 < rotary_dim <= x.shape[2], f"rotary_dim {rotary_dim} must be even and <= head_dim {x.shape[2]}")
    check(positions.dtype == torch.int64 and positions.shape == (x.shape[0],) and positions.is_contiguous(),
          f"positions must be a contiguous ({x.shape[0]},) int64 tensor")
    check(cos_sin.dtype == torch.float32 and cos_sin.dim() == 2 and cos_sin.shape[1] == rotary_dim and cos_sin.stride(1) == 1,
          f"cos_sin must be the float32 (max_position, rotary_dim={rotary_dim}) [cos | sin] cache")
    if x.shape[0]:
        heads = x.shape[1]
        _rope_kernel[(x.shape[0],)](x, positions, cos_sin, x.stride(0), x.stride(1), cos_sin.stride(0), heads,
                                    HALF=rotary_dim // 2, BLOCK_H=min(16, next_pow2(heads)),
                                    BLOCK_HALF=next_pow2(rotary_dim // 2), INTERLEAVED=interleaved)
    return x
