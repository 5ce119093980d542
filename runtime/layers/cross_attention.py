"""Cross-attention of text tokens to images' keys and values (Mllama's cross layers).

An image's keys and values come from its vision states only, so the engine computes them once
per image content hash (multimodal/cross_kv.py) and keeps them outside the KV pool; a batch
carries them per request (ForwardBatch.cross). A token attends to the images of its range
(MultimodalInputs.cross_groups); a token that attends to none gets a zero output (its row of
CrossBatch.rows is 0), so it stays causal and its KV may be a cached prefix.

# differs from transformers: there a token before the request's first image attends, with an
# all-zero mask, to every tile of every image of its batch row (padding tiles too); only the MLP
# output after it is masked. That makes text before an image depend on the images after it, so
# here such a token gets no cross-attention output (as vLLM does). Prompts that start with
# <|image|> (MllamaProcessor's base form "<|image|><|begin_of_text|>...") are the same in both.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..forward_batch import CrossBatch
from .linear import Linear
from .norm import RMSNorm


class CrossAttention(nn.Module):
    """q from the text, k/v from an image's states; q and k RMS-normed per head, no rope."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, eps: float, layer: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
        self.layer = layer  # index among the model's cross layers (into an image's stacked k/v)
        self.q_in = Linear(hidden, heads * self.head_dim)
        self.k_in = Linear(hidden, kv_heads * self.head_dim)
        self.v_in = Linear(hidden, kv_heads * self.head_dim)
        self.o_proj = Linear(heads * self.head_dim, hidden)
        self.q_norm = RMSNorm(self.head_dim, eps)
        self.k_norm = RMSNorm(self.head_dim, eps)

    def image_kv(self, states: torch.Tensor) -> torch.Tensor:
        """states (rows, hidden) of one image -> (2, rows, kv heads, head dim) keys and values."""
        k = self.k_norm(self.k_in(states).view(-1, self.kv_heads, self.head_dim))
        v = self.v_in(states).view(-1, self.kv_heads, self.head_dim)
        return torch.stack([k, v])

    def forward(self, x: torch.Tensor, cross: CrossBatch) -> torch.Tensor:
        """x (tokens, hidden) -> (tokens, hidden); rows that attend to no image are 0."""
        q = self.q_norm(self.q_in(x).view(-1, self.heads, self.head_dim))
        out = q.new_zeros(q.shape)
        for req in cross.reqs:
            by_group: dict[tuple[int, int], list[int]] = {}
            for i, g in enumerate(req.groups):
                if g[1] > g[0]:
                    by_group.setdefault(g, []).append(req.first + i)
            for (a, b), rows in by_group.items():
                kv = torch.cat([req.kv[j][self.layer] for j in range(a, b)], dim=1).to(q.dtype)  # (2, keys, kvh, hd)
                k, v = (t.transpose(0, 1).repeat_interleave(self.heads // self.kv_heads, dim=0) for t in kv)
                idx = torch.tensor(rows, device=x.device)
                o = F.scaled_dot_product_attention(q[idx].transpose(0, 1), k, v)  # (heads, rows, head dim)
                out[idx] = o.transpose(0, 1)
        return self.o_proj(out.reshape(x.shape[0], -1))
