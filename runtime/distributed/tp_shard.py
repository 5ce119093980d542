"""The shard operations `apply_tp` (tp_transform.py) composes: each replaces a built module's
parameters by this rank's part (uninitialized, the same names) and gives every sharded one
`tp_narrow(checkpoint_tensor, shard) -> this rank's part`, which the loader (loader/weights.py)
calls on a lazy safetensors slice, so a rank reads only its rows or columns from disk (a
checkpoint that fuses q/k/v or gate/up into one tensor is read whole and indexed).

- column-parallel (packed or plain linear, an expert's gate/up): this rank's output rows;
- row-parallel (o_proj, down_proj, an expert's down): this rank's input columns, the partial
  products summed by one all-reduce (a bias kept on rank 0 only, zeros elsewhere: added once);
- MoE (`shard_moe`): every expert's intermediate features split as above, the shared expert
  too, the router replicated; the routed and shared partial sums are added first, then reduced
  once (tp_layers.TPSparseMoE);
- vocab-parallel embedding and LM head: ceil(vocab / tp) rows a rank (padded)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.linear import Linear, PackedLinear
from ..layers.moe import SparseMoE
from ..models.llama_layers import LlamaMLP
from .tp_layers import RowParallelLinear, TPSparseMoE, VocabParallelEmbedding, VocabParallelLMHead


def read(loaded: Any, index: Any, dim: int) -> torch.Tensor:
    """loaded[index] along dim: a range reads only those entries from a lazy slice; a tensor of
    indices reads the whole tensor, then indexes it."""
    if isinstance(index, range):
        return loaded[(slice(None),) * dim + (slice(index.start, index.stop),)]
    whole = loaded if isinstance(loaded, torch.Tensor) else loaded[:]
    return whole.index_select(dim, index)


def ranges_to_index(parts: list[range]) -> torch.Tensor:
    return torch.cat([torch.arange(r.start, r.stop) for r in parts])


def scaled(r: range, unit: int, offset: int = 0) -> range:
    return range(offset + r.start * unit, offset + r.stop * unit)


def split(n: int, rank: int, size: int, what: str) -> range:
    """This rank's equal part of n features."""
    if n % size:
        raise ValueError(f"tp_size={size}: {what} ({n}) must split evenly over the ranks; use a tp_size that "
                         "divides it")
    w = n // size
    return range(rank * w, (rank + 1) * w)


def resize(module: nn.Module, name: str, shape: tuple[int, ...]) -> nn.Parameter | None:
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


def _rank0_only(rank: int):
    """A summed term (row-parallel bias, an expert's down bias): whole on rank 0, zeros elsewhere."""
    return lambda t, s: (t if isinstance(t, torch.Tensor) else t[:]) * (1 if rank == 0 else 0)


def shard_packed(lin: PackedLinear, parts: dict[Any, range]) -> None:
    """Column-parallel packed linear: shard s keeps checkpoint rows parts[s] (of that shard)."""
    full = {s: w for s, (_, w) in lin.shard_offsets.items()}
    order = lin.fused_order
    starts, offset = {}, 0
    for s, w in full.items():
        starts[s] = offset
        offset += w
    fused_rows = ranges_to_index([range(starts[s] + r.start, starts[s] + r.stop) for s, r in parts.items()])
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
            return read(loaded, fused_rows if shard is None else parts[shard], dim)
        return narrow

    for name in ("weight", "bias"):
        p = resize(lin, name, (offset, lin.in_features) if name == "weight" else (offset,))
        if p is not None:
            p.tp_narrow = narrower(weight_dim if name == "weight" else 0)  # type: ignore[attr-defined]


def shard_column(lin: Linear, rows: range) -> None:
    transposed = getattr(lin.weight, "weight_loader", None) is not None
    lin.out_features = len(rows)
    w = resize(lin, "weight", (len(rows), lin.in_features))
    w.tp_narrow = lambda t, s: read(t, rows, 1 if transposed else 0)  # type: ignore[union-attr]
    b = resize(lin, "bias", (len(rows),))
    if b is not None:
        b.tp_narrow = lambda t, s: read(t, rows, 0)  # type: ignore[attr-defined]


def shard_row(lin: Linear, cols: range, group: Any, reduce: bool = True) -> None:
    """reduce=False: the partial product is summed later, by the block around it (shared experts)."""
    transposed = getattr(lin.weight, "weight_loader", None) is not None
    lin.in_features = len(cols)
    w = resize(lin, "weight", (lin.out_features, len(cols)))
    w.tp_narrow = lambda t, s: read(t, cols, 0 if transposed else 1)  # type: ignore[union-attr]
    if lin.bias is not None:
        lin.bias.tp_narrow = _rank0_only(group.rank)  # type: ignore[union-attr]
    if reduce:
        lin.__class__ = RowParallelLinear
        lin.tp_group = group


def shard_mlp(mlp: LlamaMLP, group: Any, reduce: bool = True) -> None:
    cols = split(mlp.down_proj.in_features, group.rank, group.size, "the MLP's intermediate size")
    if mlp.is_gated:
        shard_packed(mlp.gate_up_proj, {0: cols, 1: cols})
    else:
        shard_column(mlp.up_proj, cols)
    shard_row(mlp.down_proj, cols, group, reduce)


def shard_moe(moe: SparseMoE, group: Any) -> None:
    """Each expert's intermediate features split over the ranks (w13 (E, 2I/tp, H): this rank's
    gate rows then its up rows; w2 (E, H, I/tp)); the router replicated; one all-reduce after the
    block. NOTE (why tensor- and not expert-parallel): every rank runs every chosen expert on
    1/tp of its features, so the work per rank is even whatever the routing, and the shard
    arithmetic is the dense MLP's."""
    ex = moe.experts
    inter = ex.intermediate
    cols = split(inter, group.rank, group.size, "the experts' intermediate size")
    both = ranges_to_index([cols, scaled(cols, 1, inter)])  # rows of the stacked (gate; up)
    e, hidden, part = ex.num_experts, ex.hidden, len(cols)

    def w13(t: Any, shard: Any) -> torch.Tensor:  # (E, 2I, H) stacked, or one expert's (I, H)
        return read(t, both, 1) if shard is None else read(t, cols, 0)

    def w2(t: Any, shard: Any) -> torch.Tensor:  # (E, H, I) stacked, or one expert's (H, I)
        return read(t, cols, 2 if shard is None else 1)

    resize(ex, "w13_weight", (e, 2 * part, hidden)).tp_narrow = w13  # type: ignore[union-attr]
    resize(ex, "w2_weight", (e, hidden, part)).tp_narrow = w2  # type: ignore[union-attr]
    b13 = resize(ex, "w13_bias", (e, 2 * part))
    if b13 is not None:
        b13.tp_narrow = lambda t, s: read(t, both, 1)  # type: ignore[attr-defined]
        ex.w2_bias.tp_narrow = _rank0_only(group.rank)  # type: ignore[union-attr]
    ex.intermediate = part
    if moe.shared_expert is not None:
        if not isinstance(moe.shared_expert, LlamaMLP):
            raise ValueError(f"tensor parallelism does not cover a {type(moe.shared_expert).__name__} shared "
                             "expert; run this model with tp_size=1")
        shard_mlp(moe.shared_expert, group, reduce=False)  # summed with the routed experts, then reduced
    moe.__class__ = TPSparseMoE
    moe.tp_group = group


def shard_feed_forward(mlp: nn.Module, group: Any) -> None:
    """A dense MLP (row-parallel down_proj) or a MoE block (one all-reduce after it)."""
    if isinstance(mlp, SparseMoE):
        shard_moe(mlp, group)
    elif isinstance(mlp, LlamaMLP):
        shard_mlp(mlp, group)
    else:
        raise ValueError(f"tensor parallelism does not cover a {type(mlp).__name__} feed-forward; run this model "
                         "with tp_size=1")


def _vocab_rows(vocab: int, rank: int, size: int) -> tuple[int, int, int]:
    """(start, valid rows, padded rows per rank): ceil(vocab / size) rows a rank, the last fewer."""
    per = -(-vocab // size)
    start = min(rank * per, vocab)
    return start, min(per, vocab - start), per


def _padded_rows(start: int, valid: int, per: int):
    def narrow(t: Any, shard: Any) -> torch.Tensor:
        part = read(t, range(start, start + valid), 0)
        pad = part.new_zeros((per - valid, *part.shape[1:]))
        return torch.cat([part, pad]) if per > valid else part
    return narrow


def shard_embedding(emb: VocabEmbedding, group: Any) -> None:
    vocab, hidden = emb.weight.shape
    start, valid, per = _vocab_rows(vocab, group.rank, group.size)
    resize(emb, "weight", (per, hidden)).tp_narrow = _padded_rows(start, valid, per)  # type: ignore[union-attr]
    emb.__class__ = VocabParallelEmbedding
    emb.tp_group, emb.vocab_start, emb.rows_valid = group, start, valid


def shard_head(head: LMHead, group: Any, tied_to: VocabEmbedding | None) -> None:
    vocab, hidden = head.weight.shape
    start, valid, per = _vocab_rows(vocab, group.rank, group.size)
    if tied_to is not None:
        head.weight = tied_to.weight  # the same rows: the tie holds per rank
    else:
        resize(head, "weight", (per, hidden)).tp_narrow = _padded_rows(start, valid, per)  # type: ignore[union-attr]
    b = resize(head, "bias", (per,))
    if b is not None:
        b.tp_narrow = _padded_rows(start, valid, per)  # type: ignore[attr-defined]
    head.__class__ = VocabParallelLMHead
    head.tp_group = group


def shard_vocab(model: nn.Module, group: Any) -> None:
    """model.model.embed_tokens and model.lm_head (tied or not), vocab-parallel."""
    emb = model.model.embed_tokens
    tied = model.lm_head.weight is emb.weight
    shard_embedding(emb, group)
    shard_head(model.lm_head, group, emb if tied else None)


def stray_linears(model: nn.Module, covered: set[int]) -> None:
    """Any linear layer outside `covered` (ids of the modules a plan sharded or replicated) is an error."""
    stray = [name for name, m in model.named_modules() if isinstance(m, Linear) and id(m) not in covered]
    if stray:
        raise ValueError(f"tensor parallelism does not cover {', '.join(stray[:4])}; run this model with tp_size=1")
