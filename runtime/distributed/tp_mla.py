"""Tensor parallelism for DeepSeek V2/V3 and MiniCPM3 (layers/mla.py), as SGLang shards them:
the attention heads split over the ranks (q_proj or q_b_proj and kv_b_proj by head, o_proj by
rows: one all-reduce), while the latent path (q_a_proj, kv_a_proj_with_mqa, their norms) and
the latent KV pool are whole on every rank: the latent is shared by all heads, so each rank
caches the same kv_lora_rank + rope channels per token and reads them for its own heads.
Dense layers' MLPs and the MoE blocks: tp_shard.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ..layers.mla import MLAttention
from .tp_shard import (
    read,
    resize,
    scaled,
    shard_column,
    shard_feed_forward,
    shard_packed,
    shard_row,
    shard_vocab,
    split,
    stray_linears,
)


def _shard_mla(attn: MLAttention, group: Any) -> int:
    """This rank's heads of one MLA block; returns their count."""
    m = attn.mla
    q = split(attn.heads, group.rank, group.size, "the model's attention heads")
    if m.q_lora_rank is None:  # q_proj is packed with kv_a_proj_with_mqa: its rows by head, the latent whole
        kv = m.kv_lora_rank + m.qk_rope_head_dim
        shard_packed(attn.qkv_a_proj, {"q": scaled(q, m.qk_head_dim), "kv": range(kv)})
    else:  # q_a_proj and kv_a_proj_with_mqa replicated; q_b_proj by head
        shard_column(attn.q_b_proj, scaled(q, m.qk_head_dim))
    up = attn.kv_b_proj  # (heads * (nope + v), rank): head h's W_UK_h then W_UV_h rows
    rows = scaled(q, up.nope + up.v)
    resize(up, "weight", (len(rows), up.rank)).tp_narrow = lambda t, s: read(t, rows, 0)  # type: ignore[union-attr]
    up.heads = len(q)
    shard_row(attn.o_proj, scaled(q, m.v_head_dim), group)
    attn.heads = attn.attn.num_heads = len(q)  # still one latent "kv head" (layers/mla.py)
    return len(q)


def shard_deepseek(model: nn.Module, group: Any) -> None:
    covered: set[int] = set()
    heads = model.config.num_heads
    for layer in model.model.layers:
        heads = _shard_mla(layer.self_attn, group)
        shard_feed_forward(layer.mlp, group)
        covered.update(id(m) for m in (*layer.self_attn.modules(), *layer.mlp.modules()))
    shard_vocab(model, group)
    stray_linears(model, covered)
    # the pool (DeepseekV2ForCausalLM.make_kv_pool) is the latent one whatever the head count
    model.config = dataclasses.replace(model.config, num_heads=heads,
                                       num_kv_heads=max(1, model.config.num_kv_heads // group.size))
