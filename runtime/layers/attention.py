"""Attention: writes the new keys/values into the KV pool, then lets the batch's backend attend.
A model file never knows which backend runs."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..forward_batch import ForwardBatch


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes (Press et al.), as Bloom and MPT compute them."""
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != num_heads:
        extra = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        slopes += [extra ** (2 * i + 1) for i in range(num_heads - closest)]
    return torch.tensor(slopes, dtype=torch.float32)


def mpt_alibi_slopes(num_heads: int, bias_max: float = 8.0) -> torch.Tensor:
    """MPT's ALiBi slopes: 2^(-bias_max * i / n) over the next power of two n, interleaved when
    num_heads is not one."""
    n = 2 ** math.ceil(math.log2(num_heads))
    slopes = 1.0 / torch.pow(2, torch.arange(1, n + 1, dtype=torch.float32) * (bias_max / n))
    if n != num_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:num_heads]
    return slopes


class Attention(nn.Module):
    """Multi-head attention over the paged KV cache.

    sliding_window: a key at position j is visible from query position i when i - j < window.
    softcap: scores become softcap * tanh(scores / softcap) (Gemma 2).
    alibi: per-head slopes added as slope * (j - i) to the scores (Bloom, MPT).
    chunk: a key is visible only from queries in its chunk of `chunk` positions (i // chunk ==
    j // chunk; Llama 4's chunked local attention).
    sinks: a learned logit per head joins each row's softmax and is dropped after it (GPT-OSS's
    attention sinks); the parameter `sinks` (heads,).
    causal=False: every token of a request sees all of its tokens (bidirectional encoders: BERT);
    NOTE: such a request must be computed whole in one forward (no cached prefix, no chunks)."""

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, layer_id: int,
                 scaling: float | None = None, sliding_window: int | None = None,
                 softcap: float | None = None, alibi: torch.Tensor | None = None,
                 v_head_dim: int | None = None, causal: bool = True, chunk: int | None = None,
                 sinks: bool = False) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.layer_id = layer_id
        self.scaling = scaling if scaling is not None else head_dim**-0.5
        self.sliding_window = sliding_window
        self.softcap = softcap
        self.causal = causal
        self.chunk = chunk
        self.register_buffer("alibi", alibi, persistent=False)
        self.sinks = nn.Parameter(torch.empty(num_heads), requires_grad=False) if sinks else None

    @property
    def plain(self) -> bool:
        """Causal softmax attention over every earlier key: what SDPA's is_causal and the tile
        kernel compute."""
        return (self.causal and self.sliding_window is None and self.chunk is None and self.alibi is None
                and self.softcap is None and self.sinks is None)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """q (tokens, heads * head_dim), k/v (tokens, kv_heads * head_dim) -> (tokens, heads * v_head_dim)."""
        tokens = q.shape[0]
        q = q.view(tokens, self.num_heads, self.head_dim)
        k = k.view(tokens, self.num_kv_heads, self.head_dim)
        v = v.view(tokens, self.num_kv_heads, self.v_head_dim)
        batch.kv_pool.store(self.layer_id, batch.out_slots, k, v)
        out = batch.attn_backend.forward(q, k, v, self, batch)
        return out.reshape(tokens, self.num_heads * self.v_head_dim)
