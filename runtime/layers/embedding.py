"""Token embedding and LM head."""

from __future__ import annotations

import torch
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
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(vocab_size), requires_grad=False) if bias else None
        self._wide: torch.Tensor | None = None  # float32 copy of weight, made on first use (after loading)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > BF16_NATIVE_MAX_ROWS and emulated_bf16(self.weight):
            # The head is the largest matrix (vocab x hidden) and batched decode multiplies it
            # every step: widen it once, not per step (costs a float32 copy of the head).
            if self._wide is None or self._wide.shape != self.weight.shape:
                self._wide = self.weight.float()
            bias = None if self.bias is None else self.bias.float()
            return F.linear(x.float(), self._wide, bias).to(x.dtype)
        return linear(x, self.weight, self.bias)
