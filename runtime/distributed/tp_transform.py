"""`apply_tp(model, group)`: shards a built (not yet loaded) Llama-shaped model for one rank, as
gpt-fast's `apply_tp` does, before its weights load.

Per layer: q/k/v and gate/up are column-parallel (this rank's heads, this rank's slice of the
intermediate features), o_proj and down_proj row-parallel (all-reduce); the token embedding and
the LM head are vocab-parallel. Attention keeps `heads / tp` query heads per rank and
`kv_heads / tp` key/value heads, or, with fewer kv heads than ranks, the one kv head its query
heads read (replicated on `tp / kv_heads` ranks). Norms, rotary tables and position embeddings
are replicated.

Each sharded parameter gets `tp_narrow(checkpoint_tensor, shard) -> this rank's part`, which
the loader (loader/weights.py) calls on a lazy safetensors slice, so a rank reads only its
rows or columns of each tensor from disk (a checkpoint that fuses q/k/v or gate/up into one
tensor is read whole and indexed). Any linear layer the plan does not cover is an error."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.linear import Linear, PackedLinear
from ..models.llama import LlamaForCausalLM
from ..models.llama_layers import LlamaAttention, LlamaMLP
from .tp_layers import RowParallelLinear, VocabParallelEmbedding, VocabParallelLMHead

REPLICABLE_QK_NORMS = (None, "head", "layer")  # per-head norms with one weight shared by all heads


def _read(loaded: Any, index: Any, dim: int) -> torch.Tensor:
    """loaded[index] along dim: a range reads only those rows/columns from a lazy slice; a tensor
    of indices reads the whole tensor, then indexes it."""
    if isinstance(index, range):
        key = slice(index.start, index.stop)
        return loaded[key] if dim == 0 else loaded[:, key]
    whole = loaded if isinstance(loaded, torch.Tensor) else loaded[:]
    return whole.index_select(dim, index)


def _ranges_to_index(parts: list[range]) -> torch.Tensor:
    return torch.cat([torch.arange(r.start, r.stop) for r in parts])


class _Plan:
    """This rank's head and feature ranges."""

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
        self.rank, self.size = rank, size
        self.heads = heads // size
        self.q = range(rank * self.heads, (rank + 1) * self.heads)
        if kv_heads >= size:
            self.kv_heads = kv_heads // size
            self.kv = range(rank * self.kv_heads, (rank + 1) * self.kv_heads)
        else:  # replicated: this rank's query heads all read kv head rank // (size // kv_heads)
            self.kv_heads = 1
            head = rank // (size // kv_heads)
            self.kv = range(head, head + 1)

    def split(self, n: int, what: str) -> range:
        if n % self.size:
            raise ValueError(f"tp_size={self.size}: {what} ({n}) must split evenly over the ranks")
        w = n // self.size
        return range(self.rank * w, (self.rank + 1) * w)


def _scaled(r: range, unit: int, offset: int = 0) -> range:
    return range(offset + r.start * unit, offset + r.stop * unit)


def _resize(module: nn.Module, name: str, shape: tuple[int, ...]) -> nn.Parameter | None:
    """Replaces parameter `name` by an uninitialized one of `shape`, keeping its loader attributes."""
    old = getattr(module, name)
    if old is None:
        return None
    new = nn.Parameter(torch.empty(shape, dtype=old.dtype, device=old.device), requires_grad=False)
    for attr in ("weight_loader", "shards"):
        if hasattr(old, attr):
            setattr(new, attr, getattr(old, attr))
    setattr(module, name, new)
    return new


def _shard_packed(lin: PackedLinear, parts: dict[Any, range]) -> None:
    """Column-parallel packed linear: shard s keeps checkpoint rows parts[s] (of that shard)."""
    full = {s: w for s, (_, w) in lin.shard_offsets.items()}
    order = lin.fused_order
    starts, offset = {}, 0
    for s, w in full.items():
        starts[s] = offset
        offset += w
    fused_rows = _ranges_to_index([range(starts[s] + r.start, starts[s] + r.stop) for s, r in parts.items()])
    if order is not None:
        fused_rows = order[fused_rows]  # the checkpoint's own row order (grouped q/k/v)
    lin.fused_order = None
    lin.shard_offsets, offset = {}, 0
    for s, r in parts.items():
        lin.shard_offsets[s] = (offset, len(r))
        offset += len(r)
    lin.out_features = offset
    weight_dim = 1 if lin.transposed else 0

    def narrower(dim: int):
        def narrow(loaded: Any, shard: Any) -> torch.Tensor:
            # shard None: one fused checkpoint tensor, of which this rank takes its rows of every shard
            return _read(loaded, fused_rows if shard is None else parts[shard], dim)
        return narrow

    for name in ("weight", "bias"):
        p = _resize(lin, name, (offset, lin.in_features) if name == "weight" else (offset,))
        if p is not None:
            p.tp_narrow = narrower(weight_dim if name == "weight" else 0)  # type: ignore[attr-defined]


def _shard_column(lin: Linear, rows: range) -> None:
    transposed = getattr(lin.weight, "weight_loader", None) is not None
    lin.out_features = len(rows)
    w = _resize(lin, "weight", (len(rows), lin.in_features))
    w.tp_narrow = lambda t, s: _read(t, rows, 1 if transposed else 0)  # type: ignore[union-attr]
    b = _resize(lin, "bias", (len(rows),))
    if b is not None:
        b.tp_narrow = lambda t, s: _read(t, rows, 0)  # type: ignore[attr-defined]


def _shard_row(lin: Linear, cols: range, group: Any) -> None:
    transposed = getattr(lin.weight, "weight_loader", None) is not None
    lin.in_features = len(cols)
    w = _resize(lin, "weight", (lin.out_features, len(cols)))
    w.tp_narrow = lambda t, s: _read(t, cols, 0 if transposed else 1)  # type: ignore[union-attr]
    if lin.bias is not None:  # added once: rank 0 keeps it, the others hold zeros
        rank = group.rank
        lin.bias.tp_narrow = lambda t, s: (t if isinstance(t, torch.Tensor) else t[:]) * (1 if rank == 0 else 0)  # type: ignore[union-attr]
    lin.__class__ = RowParallelLinear
    lin.tp_group = group


def _shard_attention(attn: LlamaAttention, plan: _Plan, group: Any) -> None:
    if attn.qk_norm not in REPLICABLE_QK_NORMS:
        raise ValueError(f"tensor parallelism does not cover q/k norm {attn.qk_norm!r} (one weight per head or "
                         "over all heads); run this model with tp_size=1")
    d, vd = attn.head_dim, attn.attn.v_head_dim
    _shard_packed(attn.qkv_proj, {"q": _scaled(plan.q, d), "k": _scaled(plan.kv, d), "v": _scaled(plan.kv, d)})
    _shard_row(attn.o_proj, _scaled(plan.q, vd), group)
    attn.heads, attn.kv_heads = plan.heads, plan.kv_heads
    attn.attn.num_heads, attn.attn.num_kv_heads = plan.heads, plan.kv_heads
    if attn.attn.alibi is not None:
        attn.attn.alibi = attn.attn.alibi[plan.q.start : plan.q.stop].clone()


def _shard_mlp(mlp: LlamaMLP, plan: _Plan, group: Any) -> None:
    inter = mlp.down_proj.in_features
    cols = plan.split(inter, "the MLP's intermediate size")
    if mlp.is_gated:
        _shard_packed(mlp.gate_up_proj, {0: cols, 1: cols})
    else:
        _shard_column(mlp.up_proj, cols)
    _shard_row(mlp.down_proj, cols, group)


def _vocab_rows(vocab: int, rank: int, size: int) -> tuple[int, int, int]:
    """(start, valid rows, padded rows per rank): ceil(vocab / size) rows a rank, the last fewer."""
    per = -(-vocab // size)
    start = min(rank * per, vocab)
    return start, min(per, vocab - start), per


def _padded_rows(start: int, valid: int, per: int):
    def narrow(t: Any, shard: Any) -> torch.Tensor:
        part = _read(t, range(start, start + valid), 0)
        pad = part.new_zeros((per - valid, *part.shape[1:]))
        return torch.cat([part, pad]) if per > valid else part
    return narrow


def _shard_embedding(emb: VocabEmbedding, group: Any) -> None:
    vocab, hidden = emb.weight.shape
    start, valid, per = _vocab_rows(vocab, group.rank, group.size)
    _resize(emb, "weight", (per, hidden)).tp_narrow = _padded_rows(start, valid, per)  # type: ignore[union-attr]
    emb.__class__ = VocabParallelEmbedding
    emb.tp_group, emb.vocab_start, emb.rows_valid = group, start, valid


def _shard_head(head: LMHead, group: Any, tied_to: VocabEmbedding | None) -> None:
    vocab, hidden = head.weight.shape
    start, valid, per = _vocab_rows(vocab, group.rank, group.size)
    if tied_to is not None:
        head.weight = tied_to.weight  # the same rows: the tie holds per rank
    else:
        _resize(head, "weight", (per, hidden)).tp_narrow = _padded_rows(start, valid, per)  # type: ignore[union-attr]
    b = _resize(head, "bias", (per,))
    if b is not None:
        b.tp_narrow = _padded_rows(start, valid, per)  # type: ignore[attr-defined]
    head.__class__ = VocabParallelLMHead
    head.tp_group = group


def apply_tp(model: nn.Module, group: Any) -> nn.Module:
    """Shards `model` in place for `group.rank` of `group.size` (see the module doc); returns it.
    model.config then holds this rank's head counts (its KV pool's layout)."""
    if not isinstance(model, LlamaForCausalLM) or type(model).task != "generate":
        raise ValueError(f"tensor parallelism covers Llama-shaped generation models; {type(model).__name__} "
                         "is not one: run it with tp_size=1")
    c = model.config
    plan = _Plan(group.rank, group.size, c.num_heads, c.num_kv_heads)
    covered: set[int] = set()
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if not isinstance(attn, LlamaAttention) or not isinstance(mlp, LlamaMLP):
            raise ValueError(f"tensor parallelism does not cover {type(layer).__name__} with "
                             f"{type(attn).__name__}/{type(mlp).__name__}; run this model with tp_size=1")
        _shard_attention(attn, plan, group)
        _shard_mlp(mlp, plan, group)
        covered.update(id(m) for m in (*attn.modules(), *mlp.modules()))
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    _shard_embedding(model.model.embed_tokens, group)
    _shard_head(model.lm_head, group, model.model.embed_tokens if tied else None)
    stray = [name for name, m in model.named_modules() if isinstance(m, Linear) and id(m) not in covered]
    if stray:
        raise ValueError(f"tensor parallelism does not cover {', '.join(stray[:4])}; run this model with tp_size=1")
    model.config = dataclasses.replace(c, num_heads=plan.heads, num_kv_heads=plan.kv_heads)
    model.tp_size = group.size
    return model


def is_sharded(model: nn.Module) -> bool:
    return getattr(model, "tp_size", 1) > 1
