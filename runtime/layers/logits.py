"""Logits processor: computes logits only for the rows the sampler and logprobs need."""

from __future__ import annotations

import torch
from torch import nn

from ..forward_batch import ForwardBatch
from .embedding import LMHead


class LogitsProcessor(nn.Module):
    """final_softcap: logits = cap * tanh(logits / cap) (Gemma 2/3).
    scale: logits *= scale (Cohere's logit_scale; Granite passes 1 / logits_scaling)."""

    def __init__(self, final_softcap: float | None = None, scale: float | None = None) -> None:
        super().__init__()
        self.final_softcap, self.scale = final_softcap, scale

    def forward(self, hidden: torch.Tensor, head: LMHead, batch: ForwardBatch) -> torch.Tensor:
        """hidden (tokens, hidden) already normalized -> (len(batch.logit_rows), vocab) float32."""
        if batch.logit_rows.numel() == 0:  # prefill-only batches need no logits: skip the head
            return hidden.new_zeros((0, head.vocab_size), dtype=torch.float32)
        logits = head(hidden[batch.logit_rows], out_dtype=torch.float32)
        if self.scale is not None:
            logits = logits * self.scale
        if self.final_softcap is not None:
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return logits
