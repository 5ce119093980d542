"""Normalization layers."""

from __future__ import annotations

import torch
from sgl.kernels.norm import rmsnorm_applies, rmsnorm_bf16, rmsnorm_offset_bf16
from torch import nn
from torch.nn import functional as F


class RMSNorm(nn.Module):
    """RMS norm. `offset=1.0` gives Gemma's `x * (1 + w)` form. Computed in float32, as
    transformers does, then cast back."""

    def __init__(self, dim: int, eps: float = 1e-6, offset: float = 0.0) -> None:
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.offset and x.dtype == torch.float32:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)  # one fused op
        if rmsnorm_applies(x, self.weight):  # the same rounding, one call
            if self.offset:
                return rmsnorm_offset_bf16(x, self.weight, self.eps, self.offset)
            return rmsnorm_bf16(x, self.weight, self.eps)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (x * (self.offset + self.weight.float())).to(dtype)
        return self.weight * x.to(dtype)


class LayerNorm(nn.Module):
    """Layer norm over the last dimension, with optional bias (OLMo has neither weight nor bias:
    `affine=False`). `offset=1.0` gives Nemotron's `(1 + w)` form. `heads`: one weight per head
    over (tokens, heads, dim) inputs (Cohere's q/k norm)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True, affine: bool = True,
                 offset: float = 0.0, heads: int | None = None) -> None:
        super().__init__()
        self.dim, self.eps, self.offset = dim, eps, offset
        shape = (heads, dim) if heads else (dim,)
        self.weight = nn.Parameter(torch.ones(shape), requires_grad=False) if affine else None
        self.bias = nn.Parameter(torch.zeros(shape), requires_grad=False) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight + self.offset if self.offset and self.weight is not None else self.weight
        if weight is None or weight.dim() == 1:
            return F.layer_norm(x, (self.dim,), weight, self.bias, self.eps)
        x = F.layer_norm(x, (self.dim,), None, None, self.eps) * weight
        return x if self.bias is None else x + self.bias


class PerHeadLayerNorm(nn.Module):
    """StableLM's q/k norm: one LayerNorm (no bias) per head, over (tokens, heads, dim) inputs,
    stored as `norms.{head}.weight`."""

    def __init__(self, dim: int, heads: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.norms = nn.ModuleList(LayerNorm(dim, eps, bias=False) for _ in range(heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.stack([n.weight for n in self.norms])  # (heads, dim)
        return F.layer_norm(x, (self.dim,), None, None, self.eps) * weight
