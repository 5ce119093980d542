"""Multi-head Latent Attention (DeepSeek V2/V3, Kimi K2).

Each token keeps one latent c = norm(x W_DKV) of kv_lora_rank channels and one rope key k_r of
qk_rope_head_dim channels shared by every head (cache/kv_pool.py: MLAKVPool). Head h's key is
[c W_UK_h, k_r] and its value c W_UV_h, with W_UK/W_UV the halves of kv_b_proj.

Attention runs over the latent ("absorbed"): the query of head h becomes [q_nope_h W_UK_h^T, q_r_h],
so its score against a token is q_nope_h . (c W_UK_h) + q_r_h . k_r, the same number without
expanding any key; the output over the latent, sum_j p_j c_j, goes through W_UV_h afterwards.
That is multi-query attention with one head of kv_lora_rank + rope channels whose value is the
latent, so the batch's attention backend runs it as it runs any other layer (radix cache,
chunked prefill and retraction only see slots). Decode reads kv_lora_rank + rope_dim numbers
per cached token and layer, whatever the number of heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from .attention import Attention
from .linear import Linear, PackedLinear
from .norm import RMSNorm
from .rotary import RotaryEmbedding, yarn_softmax_scale

LATENT_NORM_EPS = 1e-6  # DeepSeek's q_a/kv_a norms keep RMSNorm's default eps, not rms_norm_eps


@dataclass(frozen=True)
class MLAConfig:
    """The latent attention's dimensions, as DeepSeek configs name them."""

    kv_lora_rank: int
    q_lora_rank: int | None  # None: q comes from one projection of x (DeepSeek V2 Lite)
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @classmethod
    def from_hf(cls, hf: Any) -> MLAConfig:
        for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            if not getattr(hf, name, None):
                raise ValueError(f"an MLA config needs {name} (a positive int); the checkpoint's config.json lacks it")
        return cls(kv_lora_rank=hf.kv_lora_rank, q_lora_rank=hf.q_lora_rank, qk_nope_head_dim=hf.qk_nope_head_dim,
                   qk_rope_head_dim=hf.qk_rope_head_dim, v_head_dim=hf.v_head_dim)


class LatentUpProjection(nn.Module):
    """kv_b_proj, weight (heads * (nope + v), kv_lora_rank): per head, W_UK_h (nope, rank) then
    W_UV_h (v, rank). Never expanded over the cache: it is absorbed into the query and applied
    to the attention output. NOTE: not a `Linear`, so the tile packing (linear.py) leaves the
    (N, K) weight that the per-head views below read."""

    def __init__(self, kv_lora_rank: int, heads: int, nope: int, v: int) -> None:
        super().__init__()
        self.rank, self.heads, self.nope, self.v = kv_lora_rank, heads, nope, v
        self.weight = nn.Parameter(torch.empty(heads * (nope + v), kv_lora_rank), requires_grad=False)
        self._cache: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None

    def _per_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_UK (heads, nope, rank) and W_UV^T (heads, rank, v), contiguous: made once after
        loading (the CPU's batched products over the strided views of `weight` run several
        times slower); remade if the weight is replaced or written."""
        key = (self.weight.data_ptr(), self.weight._version)
        if self._cache is None or self._cache[0] != key:
            w = self.weight.detach().view(self.heads, self.nope + self.v, self.rank)
            self._cache = key, w[:, : self.nope].contiguous(), w[:, self.nope :].transpose(1, 2).contiguous()
        return self._cache[1], self._cache[2]

    def absorb_query(self, q_nope: torch.Tensor) -> torch.Tensor:
        """(tokens, heads, nope) -> (tokens, heads, rank): q_nope_h W_UK_h, one product per head."""
        w_uk, _ = self._per_head()
        return torch.bmm(q_nope.transpose(0, 1), w_uk).transpose(0, 1)

    def expand_output(self, o: torch.Tensor) -> torch.Tensor:
        """(tokens, heads, rank) attention output over the latent -> (tokens, heads * v)."""
        _, w_uv_t = self._per_head()
        out = torch.bmm(o.transpose(0, 1), w_uv_t)  # (heads, tokens, v)
        return out.transpose(0, 1).reshape(o.shape[0], -1)


class MLAttention(nn.Module):
    """DeepSeek's attention block. Checkpoint names: q_proj or q_a_proj / q_a_layernorm /
    q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj; q_proj (or q_a_proj) and
    kv_a_proj_with_mqa are one product here (`qkv_a_proj`, see `MLA_PACKED`)."""

    def __init__(self, config: ModelConfig, mla: MLAConfig, layer_id: int, rotary: RotaryEmbedding) -> None:
        super().__init__()
        c, m = config, mla
        self.mla, self.heads = m, c.num_heads
        bias = c.attention_bias
        if bias and m.q_lora_rank is None:  # q_proj has no bias there while kv_a_proj_with_mqa would
            raise ValueError("attention_bias=true with q_lora_rank=null is not supported for MLA; "
                             "set attention_bias=false (every DeepSeek checkpoint does)")
        q_width = m.q_lora_rank if m.q_lora_rank is not None else c.num_heads * m.qk_head_dim
        # x -> [q (or q's low-rank input), latent, rope key]: one product
        self.qkv_a_proj = PackedLinear(c.hidden_size, {"q": q_width, "kv": m.kv_lora_rank + m.qk_rope_head_dim},
                                       bias=bias)
        if m.q_lora_rank is not None:
            self.q_a_layernorm = RMSNorm(m.q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = Linear(m.q_lora_rank, c.num_heads * m.qk_head_dim)
        self.kv_a_layernorm = RMSNorm(m.kv_lora_rank, LATENT_NORM_EPS)
        self.kv_b_proj = LatentUpProjection(m.kv_lora_rank, c.num_heads, m.qk_nope_head_dim, m.v_head_dim)
        self.o_proj = Linear(c.num_heads * m.v_head_dim, c.hidden_size, bias)
        self.rotary = rotary
        scaling = m.qk_head_dim**-0.5 * yarn_softmax_scale(c.rope)
        # one "head" of keys [latent, rope key] whose value is the latent (see the module doc)
        self.attn = Attention(c.num_heads, 1, m.kv_lora_rank + m.qk_rope_head_dim, layer_id,
                              scaling=scaling, v_head_dim=m.kv_lora_rank)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """x (tokens, hidden) -> (tokens, hidden), + residual when given (added inside o_proj)."""
        m, tokens = self.mla, x.shape[0]
        q, kv = self.qkv_a_proj.split(self.qkv_a_proj(x))
        if m.q_lora_rank is not None:
            q = self.q_b_proj(self.q_a_layernorm(q))
        q_nope, q_rope = q.view(tokens, self.heads, m.qk_head_dim).split([m.qk_nope_head_dim, m.qk_rope_head_dim], -1)
        latent, k_rope = kv.split([m.kv_lora_rank, m.qk_rope_head_dim], -1)
        q_rope, k_rope = self.rotary(positions, q_rope.reshape(tokens, -1), k_rope.contiguous())
        # (tokens, heads, rank + rope): the absorbed queries; (tokens, rank + rope): the cache rows
        query = torch.cat((self.kv_b_proj.absorb_query(q_nope), q_rope.view(tokens, self.heads, -1)), -1)
        row = torch.cat((self.kv_a_layernorm(latent), k_rope), -1)
        out = self.attn(query.flatten(1), row, row[:, : m.kv_lora_rank], batch)  # (tokens, heads * rank)
        return self.o_proj(self.kv_b_proj.expand_output(out.view(tokens, self.heads, m.kv_lora_rank)), residual)


# checkpoint projection -> (fused parameter, shard): q_proj without q_lora_rank, q_a_proj with it
MLA_PACKED = {"q_proj": ("qkv_a_proj", "q"), "q_a_proj": ("qkv_a_proj", "q"),
              "kv_a_proj_with_mqa": ("qkv_a_proj", "kv")}
