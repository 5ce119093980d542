"""ForwardBatch: everything one model forward needs besides the weights."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

from .cache.kv_pool import KVPool


class ForwardMode(enum.Enum):
    EXTEND = "extend"  # prefill of new tokens after an optional cached prefix (chunks too)
    DECODE = "decode"  # one new token per request


@dataclass
class ForwardBatch:
    """Attention metadata is (req rows, prefix lens, seq lens, slot locations); the attention
    backend derives its own gather indices and masks from it once per batch (`attn_meta`).

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
    logit_rows: torch.Tensor  # (rows,) indices into tokens whose logits are needed
    attn_backend: Any = None
    attn_meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # per-model inputs (e.g. image embeddings)
    # compute every token as decode would, one row each (jump-forward's extends; see
    # layers/fused_decoder.py): its values then do not depend on how it was batched
    rowwise: bool = False

    @property
    def batch_size(self) -> int:
        return len(self.extend_lens)

    @property
    def seq_lens(self) -> list[int]:
        return [p + e for p, e in zip(self.prefix_lens, self.extend_lens)]
