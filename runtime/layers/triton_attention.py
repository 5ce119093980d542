"""Triton attention backend: the GPU path's attention, through the kernels in kernels/triton/
(extend attention over the paged pool for prefill and chunks, split-KV decode attention).

`prepare` builds the step's metadata on the device in one copy (kernels/triton/metadata.py);
every layer then launches one kernel, with nothing per request in Python. On the CPU it runs only
under Triton's interpreter (TRITON_INTERPRET=1), which is how the tests check it end to end
against the torch backend; speed only means something on a GPU.

Layers the kernels do not cover fall back to the torch backend, whose metadata is then built once
for the step on first use: bidirectional layers (`causal=False`, BERT-style encoders) and chunked
attention (`chunk`: Llama 4's local layers), and extends with non-causal spans (`attend_span`:
Gemma 3's images, PaliGemma's prefix).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from sgl.kernels.triton import interpreting, triton_usable
from sgl.kernels.triton.decode_attention import decode_attention
from sgl.kernels.triton.extend_attention import extend_attention
from sgl.kernels.triton.metadata import DecodeMetadata, ExtendMetadata

from ..forward_batch import ForwardBatch, ForwardMode
from .torch_attention import TorchAttnMeta, TorchNativeBackend

if TYPE_CHECKING:
    from .attention import Attention

DECODE_SPLITS = 8  # split-KV ranges per decode row (fixed, so one CUDA graph fits every length)


@dataclass
class TritonAttnMeta:
    extend: ExtendMetadata | None  # EXTEND steps
    decode: DecodeMetadata | None  # DECODE steps
    fallback: TorchAttnMeta | None = None  # the torch backend's, for layers the kernels skip


class TritonBackend:
    """Attention through the Triton kernels (CUDA, or the interpreter on CPU tensors)."""

    def __init__(self) -> None:
        self._torch = TorchNativeBackend()

    @staticmethod
    def check_usable(device: torch.device) -> None:
        """A clear error where the kernels cannot run: no triton, or a CPU without the interpreter."""
        probe = torch.empty(0, device=device)
        if not triton_usable(probe):
            raise ValueError(f"attention_backend='triton' cannot run on {device}: it needs a CUDA device "
                             "(or TRITON_INTERPRET=1 on the CPU, slow: for tests); use attention_backend='auto'")

    def prepare(self, batch: ForwardBatch) -> TritonAttnMeta:
        rows, device = batch.req_rows.tolist(), batch.input_ids.device
        if batch.mode == ForwardMode.DECODE:
            return TritonAttnMeta(None, DecodeMetadata.build(rows, list(batch.seq_lens), device))
        return TritonAttnMeta(ExtendMetadata.build(rows, list(batch.prefix_lens), list(batch.extend_lens), device), None)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Attention,
                batch: ForwardBatch) -> torch.Tensor:
        """q (tokens, heads, d) -> (tokens, heads, dv); the new keys are already in the pool."""
        meta: TritonAttnMeta = batch.attn_meta
        if not layer.causal or layer.chunk is not None or batch.attend_span is not None:
            return self._fallback(q, k, v, layer, batch, meta)
        pool_k, pool_v = batch.kv_pool.keys(layer.layer_id), batch.kv_pool.values(layer.layer_id)
        alibi = None if layer.alibi is None else layer.alibi.float().contiguous()
        sinks = None if layer.sinks is None else layer.sinks.float().contiguous()  # GPT-OSS
        flags = dict(window=layer.sliding_window, softcap=layer.softcap, alibi=alibi, sinks=sinks)
        q = q.contiguous()
        if meta.decode is not None:
            d = meta.decode
            return decode_attention(q, pool_k, pool_v, batch.req_to_token, d.req_rows, d.seq_lens, layer.scaling,
                                    num_splits=DECODE_SPLITS, **flags)
        e = meta.extend
        return extend_attention(q, pool_k, pool_v, batch.req_to_token, e.req_rows, e.q_start, e.prefix_lens,
                                e.extend_lens, e.max_extend, layer.scaling, **flags)

    def _fallback(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Attention, batch: ForwardBatch,
                  meta: TritonAttnMeta) -> torch.Tensor:
        if meta.fallback is None:
            meta.fallback = self._torch.prepare(batch)
        return self._torch.forward(q, k, v, layer, dataclasses.replace(batch, attn_meta=meta.fallback))


def triton_is_default(device: torch.device) -> bool:
    """Whether `attention_backend='auto'` picks Triton here: on CUDA (compiled), never under the
    interpreter on the CPU (correct but far too slow to serve)."""
    return device.type == "cuda" and triton_usable(torch.empty(0, device=device)) and not interpreting()
