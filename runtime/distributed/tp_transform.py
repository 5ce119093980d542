"""`apply_tp(model, group)`: shards a built (not yet loaded) model for one rank, as gpt-fast's
`apply_tp` does, before its weights load (the shard operations: tp_shard.py).

Llama-shaped models (and the MoE families built on them, models/moe_llama.py), per layer: q/k/v
and gate/up are column-parallel (this rank's heads, this rank's slice of the intermediate
features), o_proj and down_proj row-parallel (all-reduce); a MoE block splits every expert's
features the same way, the router replicated, one all-reduce after the block. Attention keeps
`heads / tp` query heads per rank and `kv_heads / tp` key/value heads, or, with fewer kv heads
than ranks, the one kv head its query heads read (replicated on `tp / kv_heads` ranks).
DeepSeek's latent attention: tp_mla.py. The token embedding and the LM head are
vocab-parallel; norms, rotary tables and position embeddings are replicated. Any linear layer
the plan does not cover is an error."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ..models.deepseek import DeepseekV2ForCausalLM
from ..models.llama import LlamaForCausalLM
from ..models.llama_layers import LlamaAttention
from .tp_mla import shard_deepseek
from .tp_shard import (
    read,
    resize,
    scaled,
    shard_feed_forward,
    shard_packed,
    shard_row,
    shard_vocab,
    stray_linears,
)

REPLICABLE_QK_NORMS = (None, "head", "layer")  # per-head norms with one weight shared by all heads


class _Plan:
    """This rank's head ranges."""

    def __init__(self, rank: int, size: int, heads: int, kv_heads: int) -> None:
        if heads % size:
            raise ValueError(f"tp_size={size}: the model's {heads} attention heads must split evenly over the "
                             "ranks; use a tp_size that divides them")
        if kv_heads >= size and kv_heads % size:
            raise ValueError(f"tp_size={size}: the model's {kv_heads} key/value heads must split evenly over the "
                             "ranks; use a tp_size that divides them")
        if kv_heads < size and size % kv_heads:
            raise ValueError(f"tp_size={size}: with {kv_heads} key/value heads (fewer than the ranks) tp_size must "
                             "be a multiple of them, so each kv head is replicated on the same number of ranks")
        self.heads = heads // size
        self.q = range(rank * self.heads, (rank + 1) * self.heads)
        if kv_heads >= size:
            self.kv_heads = kv_heads // size
            self.kv = range(rank * self.kv_heads, (rank + 1) * self.kv_heads)
        else:  # replicated: this rank's query heads all read kv head rank // (size // kv_heads)
            self.kv_heads = 1
            head = rank // (size // kv_heads)
            self.kv = range(head, head + 1)


def _shard_attention(attn: LlamaAttention, plan: _Plan, group: Any) -> None:
    if attn.qk_norm not in REPLICABLE_QK_NORMS:
        raise ValueError(f"tensor parallelism does not cover q/k norm {attn.qk_norm!r} (one weight per head or "
                         "over all heads); run this model with tp_size=1")
    d, vd = attn.head_dim, attn.attn.v_head_dim
    shard_packed(attn.qkv_proj, {"q": scaled(plan.q, d), "k": scaled(plan.kv, d), "v": scaled(plan.kv, d)})
    shard_row(attn.o_proj, scaled(plan.q, vd), group)
    attn.heads, attn.kv_heads = plan.heads, plan.kv_heads
    attn.attn.num_heads, attn.attn.num_kv_heads = plan.heads, plan.kv_heads
    if attn.attn.sinks is not None:  # one learned logit per query head (GPT-OSS): this rank's heads
        q = plan.q
        resize(attn.attn, "sinks", (plan.heads,)).tp_narrow = lambda t, s: read(t, q, 0)  # type: ignore[union-attr]
    if attn.attn.alibi is not None:
        attn.attn.alibi = attn.attn.alibi[plan.q.start : plan.q.stop].clone()


def _shard_llama(model: LlamaForCausalLM, group: Any) -> None:
    c = model.config
    plan = _Plan(group.rank, group.size, c.num_heads, c.num_kv_heads)
    covered: set[int] = set()
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if not isinstance(attn, LlamaAttention):
            raise ValueError(f"tensor parallelism does not cover {type(layer).__name__} with "
                             f"{type(attn).__name__}; run this model with tp_size=1")
        _shard_attention(attn, plan, group)
        shard_feed_forward(mlp, group)
        covered.update(id(m) for m in (*attn.modules(), *mlp.modules()))
    shard_vocab(model, group)
    stray_linears(model, covered)
    model.config = dataclasses.replace(c, num_heads=plan.heads, num_kv_heads=plan.kv_heads)


def apply_tp(model: nn.Module, group: Any) -> nn.Module:
    """Shards `model` in place for `group.rank` of `group.size` (see the module doc); returns it.
    model.config then holds this rank's head counts (its KV pool's layout)."""
    if type(model).task == "generate" and isinstance(model, LlamaForCausalLM):
        _shard_llama(model, group)
    elif type(model).task == "generate" and isinstance(model, DeepseekV2ForCausalLM):
        shard_deepseek(model, group)
    else:
        raise ValueError(f"tensor parallelism covers Llama-shaped and DeepSeek (MLA) generation models; "
                         f"{type(model).__name__} is neither: run it with tp_size=1")
    model.tp_size = group.size
    return model


def is_sharded(model: nn.Module) -> bool:
    return getattr(model, "tp_size", 1) > 1
