"""Normalization layers."""

from __future__ import annotations

import torch
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
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (x * (self.offset + self.weight.float())).to(dtype)
        return self.weight * x.to(dtype)


class LayerNorm(nn.Module):
    """Layer norm with optional bias (OLMo has neither weight nor bias: `affine=False`)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True, affine: bool = True) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim), requires_grad=False) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
