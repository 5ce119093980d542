"""Token embedding and LM head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .linear import linear


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
