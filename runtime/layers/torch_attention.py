"""Torch-native attention backend (the CPU path): SDPA over KV gathered from the slot pool.

Per batch, `prepare` builds once what every layer reuses:
- kv_index (batch, max_kv): KV slots of each request's tokens, padded past its length;
- q_index (batch * max_q,): packed token of each padded query position; q_valid: the padded
  positions that hold a token, in packed order;
- masks (batch, 1, max_q, max_kv), bool, one per (sliding-window size, causal, chunk), built on
  first use.

Bidirectional layers over whole prompts (encoders) skip the pool: encoder_attention.py.

NOTE: padded keys point at real (finite) slots and are masked out; padded query rows are given
key 0 so softmax never sees an all-masked row, and their outputs are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from ..device_caps import emulated_bf16
from ..forward_batch import ForwardBatch, ForwardMode
from .encoder_attention import Group, grouped_attention, make_groups

if TYPE_CHECKING:
    from .attention import Attention


@dataclass
class TorchAttnMeta:
    """What every layer of one batch reuses (see the module docstring)."""

    kv_index: torch.Tensor  # (batch, max_kv) KV slots of each request's tokens, padded
    seq_lens: torch.Tensor  # (batch,)
    prefix_lens: torch.Tensor  # (batch,)
    max_q: int
    self_causal: bool  # a lone request with nothing cached: causal over its own new keys, no gather
    dense_decode: bool  # a decode of one request: no mask
    q_index: torch.Tensor | None = None  # (batch * max_q,) packed token of each padded query position
    q_valid: torch.Tensor | None = None  # padded positions that hold a token, in packed order
    # (window, causal, chunk) -> mask, on first use
    masks: dict[tuple[int | None, bool, int | None], torch.Tensor] = field(default_factory=dict)
    no_prefix: bool = False  # an extend of whole prompts (nothing cached)
    groups: list[Group] | None = None  # bidirectional layers' length groups, on first use
    # (batch, max_q, 2) each query's non-causal span [lo, hi) (batch.attend_span padded) where
    # the batch has some; None: causal
    q_span: torch.Tensor | None = None


class TorchNativeBackend:
    """SDPA over the pool on any device (the reference backend)."""

    meta_type = TorchAttnMeta  # a subclass's backend adds fields of its own

    def prepare(self, batch: ForwardBatch) -> TorchAttnMeta:
        dev = batch.input_ids.device
        max_kv, max_q = max(batch.seq_lens), max(batch.extend_lens)
        extend = batch.mode == ForwardMode.EXTEND
        meta = self.meta_type(
            kv_index=batch.req_to_token[batch.req_rows, :max_kv],
            seq_lens=torch.tensor(batch.seq_lens, device=dev),
            prefix_lens=torch.tensor(batch.prefix_lens, device=dev),
            max_q=max_q,
            self_causal=extend and batch.batch_size == 1 and batch.prefix_lens[0] == 0 and batch.attend_span is None,
            dense_decode=batch.mode == ForwardMode.DECODE and batch.batch_size == 1,
            no_prefix=extend and not any(batch.prefix_lens))
        if extend and batch.batch_size > 1:
            ext = torch.tensor(batch.extend_lens, device=dev)
            starts = torch.cumsum(ext, 0) - ext
            offs = torch.arange(max_q, device=dev)
            valid = offs[None, :] < ext[:, None]  # (batch, max_q)
            meta.q_index = torch.where(valid, starts[:, None] + offs[None, :], 0).flatten()
            meta.q_valid = valid.flatten().nonzero()[:, 0]
        if extend and batch.attend_span is not None:
            span = batch.attend_span if meta.q_index is None else batch.attend_span.index_select(0, meta.q_index)
            meta.q_span = span.view(batch.batch_size, max_q, 2)  # padded rows: any span (dropped)
        return meta

    def _mask(self, batch: ForwardBatch, window: int | None, causal: bool = True,
              chunk: int | None = None) -> torch.Tensor | None:
        """(batch, 1, max_q, max_kv) bool, True where query i may see key j; None if all may.
        causal: j <= i (within the window and chunk), or j in i's non-causal span (meta.q_span);
        causal=False: every key of the request (j < seq_len), whatever the query's position;
        chunk: only keys of the query's chunk (j // chunk == i // chunk)."""
        meta: TorchAttnMeta = batch.attn_meta
        if (window, causal, chunk) not in meta.masks:
            dev = meta.kv_index.device
            max_q, kv = meta.max_q, meta.kv_index.shape[1]
            q_pos = meta.prefix_lens[:, None] + torch.arange(max_q, device=dev)[None, :]  # (batch, max_q)
            j = torch.arange(kv, device=dev)[None, None, :]
            mask = j < meta.seq_lens[:, None, None]  # (batch, 1, kv): the request's own keys
            if causal:
                mask = mask & (j <= q_pos[:, :, None])
            else:
                mask = mask.expand(-1, max_q, -1).clone()
            if window is not None:
                mask &= j > q_pos[:, :, None] - window
            if chunk is not None:
                mask &= j // chunk == (q_pos // chunk)[:, :, None]
            if causal and meta.q_span is not None:  # the window does not apply inside a span
                mask |= (j >= meta.q_span[:, :, :1]) & (j < meta.q_span[:, :, 1:])
            mask[:, :, 0] |= ~mask.any(-1)  # padded query rows see key 0 (dropped later)
            meta.masks[window, causal, chunk] = mask[:, None]
        return meta.masks[window, causal, chunk]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Attention,
                batch: ForwardBatch) -> torch.Tensor:
        """q (tokens, heads, d), k/v (tokens, kv_heads, d) of the new tokens -> (tokens, heads, dv)."""
        meta: TorchAttnMeta = batch.attn_meta
        window, chunk = layer.sliding_window, layer.chunk
        explicit = layer.softcap is not None or layer.alibi is not None or layer.sinks is not None
        if not layer.causal and meta.no_prefix and batch.batch_size > 1 and window is None and not explicit:
            if meta.groups is None:
                meta.groups = make_groups(batch.extend_lens, q.device)
            if emulated_bf16(q):
                return grouped_attention(q.float(), k.float(), v.float(), meta.groups, layer.scaling,
                                         layer.v_head_dim).to(q.dtype)
            return grouped_attention(q, k, v, meta.groups, layer.scaling, layer.v_head_dim)
        within = (window is None or window >= q.shape[0]) and (chunk is None or chunk >= q.shape[0])
        if meta.self_causal and within and not explicit:
            out = F.scaled_dot_product_attention(
                q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                is_causal=layer.causal, scale=layer.scaling, enable_gqa=True)
            return out[0].transpose(0, 1)  # (tokens, heads, dv)

        kv_index = meta.kv_index
        flat, shape = kv_index.flatten(), (*kv_index.shape, k.shape[1], -1)
        # NOTE: index_select on the flat index is ~10x faster than advanced indexing `pool[kv_index]`.
        keys = batch.kv_pool.keys(layer.layer_id).index_select(0, flat).view(shape).transpose(1, 2)  # (b, kv_heads, max_kv, d)
        if batch.kv_pool.values_in_keys:  # MLA: a value is its key's first dv channels
            values = keys[..., : layer.v_head_dim]  # gathered once
        else:
            values = batch.kv_pool.values(layer.layer_id).index_select(0, flat).view(shape).transpose(1, 2)
        # decode with fewer kv heads than heads: each kv head's group of heads are its query rows,
        # (batch, kv_heads, groups, d), so SDPA never repeats the keys per head (MLA: 1 kv head of
        # kv_lora_rank + rope channels and every head in its group)
        folded = batch.mode == ForwardMode.DECODE and not explicit and k.shape[1] < q.shape[1]
        if folded:
            queries = q.view(q.shape[0], k.shape[1], -1, q.shape[2])
        elif batch.mode == ForwardMode.DECODE:
            queries = q[:, :, None, :]  # (batch, heads, 1, d)
        elif batch.batch_size == 1:
            queries = q.transpose(0, 1)[None]  # (1, heads, tokens, d)
        else:
            queries = q.index_select(0, meta.q_index).view(batch.batch_size, -1, *q.shape[1:]).transpose(1, 2)

        if emulated_bf16(q):  # bf16 SDPA over gathered keys runs ~4x slower than float32 there
            queries, keys, values = queries.float(), keys.float(), values.float()
        needs_mask = not (meta.dense_decode and window is None and chunk is None)
        mask = self._mask(batch, window, layer.causal, chunk) if needs_mask else None
        if folded and batch.kv_pool.values_in_keys:
            # MLA decode: SDPA on the CPU takes a slow path for values that are a strided view of
            # the keys (~10x at 1,024 keys in bf16); two float32 products are faster than either
            out = self._explicit(queries, keys, values, mask, layer, batch)
        elif not explicit:  # a decode mask (batch, 1, 1, max_kv) broadcasts over the folded query rows
            out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask,
                                                 scale=layer.scaling, enable_gqa=not folded)
        else:
            out = self._explicit(queries, keys, values, mask, layer, batch)

        out = out.to(q.dtype)
        # out: (batch, heads, max_q, dv) -> packed (tokens, heads, dv)
        if folded:  # (batch, kv_heads, groups, dv)
            return out.reshape(q.shape[0], q.shape[1], -1)
        if batch.mode == ForwardMode.DECODE:
            return out[:, :, 0, :]
        if batch.batch_size == 1:
            return out[0].transpose(0, 1)
        return out.transpose(1, 2).flatten(0, 1).index_select(0, meta.q_valid)

    @staticmethod
    def _explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                  layer: Attention, batch: ForwardBatch) -> torch.Tensor:
        """Attention with score soft-capping, ALiBi and/or sinks, which SDPA cannot express.
        Scores and softmax in float32."""
        groups = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * layer.scaling  # (b, h, q, kv)
        if layer.softcap is not None:
            scores = torch.tanh(scores / layer.softcap) * layer.softcap
        if layer.alibi is not None:
            meta: TorchAttnMeta = batch.attn_meta
            q_pos = meta.prefix_lens[:, None] + torch.arange(q.shape[2], device=q.device)[None, :]
            rel = torch.arange(k.shape[2], device=q.device)[None, None, :] - q_pos[:, :, None]  # (b, q, kv): j - i
            scores = scores + layer.alibi[None, :, None, None] * rel[:, None].float()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        if layer.sinks is not None:  # one more logit per row, dropped after the softmax
            sink = layer.sinks.float()[None, :, None, None].expand(*scores.shape[:3], 1)
            probs = torch.cat([scores, sink], -1).softmax(-1)[..., :-1].to(v.dtype)
            return torch.matmul(probs, v)
        probs = scores.softmax(-1).to(v.dtype)
        return torch.matmul(probs, v)
