"""Token embedding and LM head."""

from __future__ import annotations

import torch
from sgl.kernels.cpu.isa import Level, isa
from sgl.kernels.linear import linear_applies, linear_bf16
from torch import nn
from torch.nn import functional as F

from ..device_caps import emulated_bf16
from .linear import BF16_NATIVE_MAX_ROWS, linear


class VocabEmbedding(nn.Module):
    """(tokens,) ids -> (tokens, hidden). `scale` multiplies the output (Gemma: sqrt(hidden))."""

    def __init__(self, vocab_size: int, hidden: int, scale: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden), requires_grad=False)
        self.scale = scale

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = F.embedding(ids, self.weight)
        if self.scale is not None:
            # transformers multiplies by the scale cast to the activation dtype
            x = x * torch.tensor(self.scale, dtype=x.dtype)
        return x


class LMHead(nn.Module):
    """hidden -> vocab logits; shares the embedding weight when tied."""

    def __init__(self, vocab_size: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        self.vocab_size = vocab_size  # the logits' width (a vocab-parallel head holds a slice of the rows)
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(vocab_size), requires_grad=False) if bias else None
        self._wide: torch.Tensor | None = None  # float32 copy of weight, made on first use (after loading)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isa().level == Level.AVX2 and linear_applies(x, self.weight, capped=False):
            # AVX2: every row count through the kernel, each row alone, so a token's logits are
            # the same decoded or in a rowwise extend of any size (the fused stack's identity);
            # past 16 rows it is compute-bound, about as fast as a float32 product of the head
            return linear_bf16(x, self.weight, self.bias)
        if x.shape[0] > BF16_NATIVE_MAX_ROWS and emulated_bf16(self.weight):
            # The head is the largest matrix (vocab x hidden) and batched decode multiplies it
            # every step: widen it once, not per step (costs a float32 copy of the head).
            if self._wide is None or self._wide.shape != self.weight.shape:
                self._wide = self.weight.float()
            bias = None if self.bias is None else self.bias.float()
            return F.linear(x.float(), self._wide, bias).to(x.dtype)
        return linear(x, self.weight, self.bias)
