"""RMS norm with the residual add fused in (a decoder block's `h = x + residual; norm(h)`), and
its torch reference. Rounding as transformers: the sum rounded to x's dtype, normalized in
float32, rounded to x's dtype, then multiplied by the weight."""

from __future__ import annotations

import torch

from . import check, next_pow2

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


def add_rmsnorm_reference(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                          eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual (rows, D) -> (normed, x + residual); without residual, (normed, x)."""
    h = x if residual is None else x + residual
    hf = h.float()
    normed = (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return weight * normed, h


if triton is not None:

    @triton.jit
    def _add_rmsnorm_kernel(X, R, W, Out, H, stride_x, stride_r, eps, D: tl.constexpr, BLOCK: tl.constexpr,
                            HAS_RESIDUAL: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        valid = offs < D
        h = tl.load(X + row * stride_x + offs, mask=valid, other=0.0)
        if HAS_RESIDUAL:
            h = (h.to(tl.float32) + tl.load(R + row * stride_r + offs, mask=valid, other=0.0).to(tl.float32))
            h = h.to(X.dtype.element_ty)
            tl.store(H + row * D + offs, h, mask=valid)
        hf = h.to(tl.float32)
        inv = 1.0 / tl.sqrt(tl.sum(hf * hf, 0) / D + eps)
        normed = (hf * inv).to(X.dtype.element_ty).to(tl.float32)
        w = tl.load(W + offs, mask=valid, other=0.0).to(tl.float32)
        tl.store(Out + row * D + offs, (normed * w).to(Out.dtype.element_ty), mask=valid)


def add_rmsnorm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """As `add_rmsnorm_reference`: x, residual (rows, D), rows may be strided, D contiguous;
    weight (D,) of x's dtype. Returns contiguous tensors."""
    check(x.dim() == 2 and x.stride(1) == 1, f"x must be (rows, D) with D contiguous, got shape {tuple(x.shape)} strides {x.stride()}")
    check(weight.shape == (x.shape[1],) and weight.is_contiguous() and weight.dtype == x.dtype,
          f"weight must be a contiguous ({x.shape[1]},) tensor of x's dtype {x.dtype}")
    if residual is not None:
        check(residual.shape == x.shape and residual.stride(1) == 1 and residual.dtype == x.dtype,
              f"residual must match x: shape {tuple(x.shape)}, dtype {x.dtype}, D contiguous")
    rows, d = x.shape
    out = torch.empty(rows, d, dtype=x.dtype, device=x.device)
    h = torch.empty_like(out) if residual is not None else x
    if rows:
        _add_rmsnorm_kernel[(rows,)](x, residual if residual is not None else x, weight, out, h, x.stride(0),
                                     residual.stride(0) if residual is not None else 0, float(eps), D=d,
                                     BLOCK=next_pow2(d), HAS_RESIDUAL=residual is not None)
    return out, h
