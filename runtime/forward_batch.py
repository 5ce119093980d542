"""The two shapes of a batch: `ScheduledBatch`, what the scheduler decided (typed, per request),
and `ForwardBatch`, the tensors one model forward reads, which the runner makes from it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .cache.kv_pool import KVPool

if TYPE_CHECKING:
    from .layers.attention_backend import AttentionBackend
    from .multimodal.items import MediaItem, MediaSpan


class ForwardMode(enum.Enum):
    EXTEND = "extend"  # prefill of new tokens after an optional cached prefix (chunks too)
    DECODE = "decode"  # one new token per request


@dataclass(frozen=True)
class InputEmbeds:
    """Embeddings that replace the token embeddings of some of a request's new tokens (images,
    video frames, caller-given embeddings): rows (n, hidden) for positions `offsets` (n,),
    counted from the first token this forward computes for the request."""

    offsets: torch.Tensor  # (n,) int64
    rows: torch.Tensor  # (n, hidden)


@dataclass(frozen=True)
class ScheduledReq:
    """One request's part of a batch: its tokens at positions start.. go to out_slots."""

    row: int  # its row of the request-to-token table
    start: int  # tokens already in the KV cache: the first position computed
    input_ids: list[int]  # the tokens computed now
    out_slots: torch.Tensor  # (len(input_ids),) KV slots they are written to
    embeds: InputEmbeds | None = None
    # parts of images/videos among these tokens: the runner embeds them (encoder or its cache)
    # into `embeds` before packing
    media: tuple[MediaSpan, ...] = ()
    # (3, len(input_ids)) M-RoPE positions (a Qwen2-VL request with media); None: start..
    mrope_positions: torch.Tensor | None = None
    token_types: list[int] | None = None  # segment of each token computed now (sentence pairs)
    # per token computed now: the non-causal span [lo, hi) it belongs to ((0, 0): none), whose
    # every key it also sees (MultimodalInputs.attend_spans); None: no token is in one
    attend_span: list[tuple[int, int]] | None = None
    # cross-attention (Mllama): the request's images in prompt order, per token computed now the
    # images [a, b) it attends ((0, 0): none; MultimodalInputs.cross_groups), and per image its
    # keys and values (cross layers, 2, rows, kv heads, head dim), which the runner fills from
    # its cross-KV cache (multimodal/cross_kv.py)
    cross_items: tuple[MediaItem, ...] = ()
    cross_groups: list[tuple[int, int]] | None = None
    cross_kv: tuple[torch.Tensor, ...] = ()


@dataclass(frozen=True)
class CrossRequest:
    """One request's part of a cross-attention batch: its packed tokens [first, first + n),
    each token's image range, and its images' keys and values (see ScheduledReq)."""

    first: int
    groups: list[tuple[int, int]]  # (n,) per token: images [a, b) ((0, 0): none)
    kv: tuple[torch.Tensor, ...]  # per image (cross layers, 2, rows, kv heads, head dim)


@dataclass(frozen=True)
class CrossBatch:
    reqs: list[CrossRequest]  # the batch's requests with images (text-only ones attend to none)
    rows: torch.Tensor  # (tokens, 1) 1.0 where a token attends to some image, else 0.0


@dataclass(frozen=True)
class ScheduledBatch:
    mode: ForwardMode
    reqs: list[ScheduledReq]
    logit_rows: list[int]  # indices into the packed tokens whose logits are needed
    pool_reqs: list[int] = field(default_factory=list)  # indices into reqs to pool (embedding models)
    # compute every token as decode would, one row each (jump-forward's extends; see
    # layers/fused_decoder.py): its values then do not depend on how it was batched
    rowwise: bool = False


@dataclass
class ForwardBatch:
    """Attention metadata is (req rows, prefix lens, seq lens, slot locations); the attention
    backend derives its own gather indices and masks from it once per batch (`attn_meta`, a
    dataclass of that backend).

    Token-level tensors are packed request after request: request b owns tokens
    [cu_extend[b], cu_extend[b] + extend_lens[b]).
    """

    mode: ForwardMode
    input_ids: torch.Tensor  # (tokens,)
    positions: torch.Tensor  # (tokens,)
    req_rows: torch.Tensor  # (batch,) rows of the request-to-token table
    prefix_lens: list[int]  # tokens already in the KV cache, per request
    extend_lens: list[int]  # new tokens this forward, per request
    out_slots: torch.Tensor  # (tokens,) KV slots the new tokens are written to
    kv_pool: KVPool
    req_to_token: torch.Tensor  # (max_requests, max_context) slot table
    logit_rows: torch.Tensor  # (rows,) indices into tokens whose head output is needed
    attn_backend: AttentionBackend
    attn_meta: Any = None  # made by attn_backend.prepare(self)
    # (tokens,) indices into tokens, and their (n, hidden) rows: embeddings given for them
    embed_index: torch.Tensor | None = None
    embed_rows: torch.Tensor | None = None
    rowwise: bool = False
    # (3, tokens) M-RoPE positions when a request of the batch has them (the others' rows all
    # equal `positions`); None otherwise
    mrope_positions: torch.Tensor | None = None
    # (tokens,) the segment of each token (BERT's token types); None: every token is segment 0
    token_type_ids: torch.Tensor | None = None
    # (tokens, 2) the non-causal span [lo, hi) of each token ((0, 0): none) where a request of
    # the batch has some; None: every token causal. In causal layers a token sees the keys its
    # causal (and window) rule allows and every key of its span (transformers' blockwise overlay).
    attend_span: torch.Tensor | None = None
    # cross-attention keys and values per request (Mllama); None: no request of the batch has images
    cross: CrossBatch | None = None

    @property
    def batch_size(self) -> int:
        return len(self.extend_lens)

    @property
    def seq_lens(self) -> list[int]:
        return [p + e for p, e in zip(self.prefix_lens, self.extend_lens)]

    def query_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each new token as one query row of the single-row attention kernel: (tokens,) int64
        its request's table row, (tokens,) int64 the keys it sees. Token j (0-based) among a
        request's new tokens sees its prefix and new tokens up to j: prefix + j + 1 keys."""
        lens, prefix = torch.tensor(self.extend_lens), torch.tensor(self.prefix_lens)
        starts = torch.cumsum(lens, 0) - lens
        kv_len = torch.repeat_interleave(prefix - starts + 1, lens) + torch.arange(int(lens.sum()))
        return torch.repeat_interleave(self.req_rows.cpu(), lens).contiguous(), kv_len.to(torch.int64)

    def embed(self, embed_tokens: Any) -> torch.Tensor:
        """(tokens, hidden): the token embeddings, with the given input embeddings in place of
        theirs (a model calls this instead of looking the ids up itself)."""
        x = embed_tokens(self.input_ids)
        if self.embed_index is not None:
            x = x.index_copy(0, self.embed_index, self.embed_rows.to(x.dtype))  # type: ignore[union-attr]
        return x


def pack(sched: ScheduledBatch, kv_pool: KVPool, req_to_token: torch.Tensor, backend: AttentionBackend,
         device: torch.device) -> ForwardBatch:
    """The ForwardBatch of a scheduled batch: token tensors packed in request order."""
    input_ids: list[int] = []
    positions: list[int] = []
    embed_index, embed_rows = [], []
    mrope = any(r.mrope_positions is not None for r in sched.reqs)
    mrope_parts = []
    types: list[int] | None = [] if any(r.token_types is not None for r in sched.reqs) else None
    spans: list[tuple[int, int]] | None = [] if any(r.attend_span is not None for r in sched.reqs) else None
    cross: list[CrossRequest] = []
    for r in sched.reqs:
        if r.cross_groups is not None:
            if len(r.cross_kv) != len(r.cross_items):
                raise RuntimeError("a cross-attention request reached pack without its keys and values")
            cross.append(CrossRequest(len(input_ids), r.cross_groups, r.cross_kv))
        if spans is not None:
            spans += r.attend_span if r.attend_span is not None else [(0, 0)] * len(r.input_ids)
        if types is not None:
            types += r.token_types if r.token_types is not None else [0] * len(r.input_ids)
        if r.embeds is not None:
            embed_index.append(r.embeds.offsets + len(input_ids))
            embed_rows.append(r.embeds.rows)
        if mrope:
            mrope_parts.append(r.mrope_positions if r.mrope_positions is not None else
                               torch.arange(r.start, r.start + len(r.input_ids)).expand(3, -1))
        input_ids += r.input_ids
        positions += range(r.start, r.start + len(r.input_ids))
    batch = ForwardBatch(
        mode=sched.mode,
        input_ids=torch.tensor(input_ids, dtype=torch.int64, device=device),
        positions=torch.tensor(positions, dtype=torch.int64, device=device),
        req_rows=torch.tensor([r.row for r in sched.reqs], dtype=torch.int64, device=device),
        prefix_lens=[r.start for r in sched.reqs],
        extend_lens=[len(r.input_ids) for r in sched.reqs],
        out_slots=torch.cat([r.out_slots for r in sched.reqs]).to(device),
        kv_pool=kv_pool,
        req_to_token=req_to_token,
        logit_rows=torch.tensor(sched.logit_rows, dtype=torch.int64, device=device),
        attn_backend=backend,
        embed_index=torch.cat(embed_index).to(device) if embed_index else None,
        embed_rows=_cat_rows(embed_rows).to(device) if embed_rows else None,
        rowwise=sched.rowwise,
        mrope_positions=torch.cat(mrope_parts, dim=1).to(device) if mrope else None,
        token_type_ids=None if types is None else torch.tensor(types, dtype=torch.int64, device=device),
        attend_span=None if spans is None else torch.tensor(spans, dtype=torch.int64, device=device).view(-1, 2),
    )
    if cross:
        rows = torch.zeros(len(input_ids), 1)
        for c in cross:
            rows[c.first : c.first + len(c.groups), 0] = torch.tensor([float(b > a) for a, b in c.groups])
        batch.cross = CrossBatch(cross, rows.to(device))
    batch.attn_meta = backend.prepare(batch)
    return batch


def _cat_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """Requests' embedding rows stacked; rows narrower than the widest (a caller's (n, hidden)
    beside Qwen3-VL's media rows with DeepStack columns) get zero columns (nothing to add)."""
    width = max(r.shape[1] for r in rows)
    return torch.cat([r if r.shape[1] == width else torch.nn.functional.pad(r, (0, width - r.shape[1])) for r in rows])
