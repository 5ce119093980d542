"""Attention backends, chosen by device behind one small interface.

A backend makes its metadata once per batch (`prepare`, a dataclass of its own) and attends for
every layer (`forward`). A model file only calls `Attention`, which calls the batch's backend:

- `TorchNativeBackend` (torch_attention.py): SDPA over the pool, any device; the reference.
- `CpuKernelBackend`: the torch backend, with causal prefill on the CPU's tile unit where the C
  kernels apply (kernels/cpu/prefill_attention_bf16.c; ~2x SDPA at 512 tokens), else bf16
  extends whose rows see few keys one query row at a time (decode's kernel, attention_bf16.c).
- `TritonBackend` (triton_attention.py): the Triton kernels over the paged pool; CUDA's default,
  and on the CPU under TRITON_INTERPRET=1 (tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from sgl.kernels.attention import attention_rows_bf16, prefill_attention_bf16
from sgl.kernels.cpu import Level, bf16_library, isa

from ..config import ATTENTION_BACKENDS
from ..forward_batch import ForwardBatch, ForwardMode
from .torch_attention import TorchAttnMeta, TorchNativeBackend

if TYPE_CHECKING:
    from .attention import Attention


class AttentionBackend(Protocol):
    def prepare(self, batch: ForwardBatch) -> Any:
        """The batch's metadata (gather indices, masks): made once, read by every layer."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Attention,
                batch: ForwardBatch) -> torch.Tensor:
        """q (tokens, heads, d), k/v (tokens, kv_heads, d) of the new tokens, already stored
        in the pool -> (tokens, heads, dv)."""


def rows_max_mean_keys(head_dim: int) -> int:
    """The most keys an extend's query rows may see on average (after any window) for it to attend
    one row at a time in C (kernels/cpu/attention_bf16.c, decode's kernel: keys read in place
    through the slot table) rather than by SDPA, whose blocked products reuse each key across
    queries; 0 where the kernel has no vector path. A row's fixed costs (its softmax, the slot
    lookups) weigh less against wider heads. Measured side by side on Zen 4, attention time alone,
    rows against SDPA: SmolLM2 (9 heads of 64 over 3) 1.7x for a 256- or 512-token prompt (128 or
    256 keys a row on average), even at 1,024 (512); at the avx2 level (SDPA in float32) 1.05x at
    256 tokens, even at 512, 0.67x at 768, 0.5x at 2,048. Gemma 3 (4 of 256 over 1, windows of 512)
    2.1x to 4x from 512 to 2,048 tokens, avx2 1.3x to 2.9x. 16 requests' 16 tokens after a shared
    256-token prefix: SmolLM2 2.4x (avx2 1.25x), Gemma 2.2x (avx2 1.7x)."""
    level = isa().level
    return 8 * head_dim if level >= Level.AVX512_BF16 else 4 * head_dim if level >= Level.AVX2 else 0


@dataclass
class ExtendRows:
    """An extend's query rows for the row kernel (`ForwardBatch.query_rows`), made once per batch."""

    req: torch.Tensor  # (tokens,) int64 table row of each token
    kv_len: torch.Tensor  # (tokens,) int64 keys each token sees (before any window)
    max_len: int
    mean_keys: dict[int | None, float]  # window -> mean keys a row sees, on first use

    @classmethod
    def of(cls, batch: ForwardBatch) -> ExtendRows:
        req, kv_len = batch.query_rows()
        return cls(req, kv_len, int(kv_len.max()), {})

    def mean(self, window: int | None) -> float:
        if window not in self.mean_keys:
            seen = self.kv_len if window is None else self.kv_len.clamp(max=window)
            self.mean_keys[window] = float(seen.double().mean())
        return self.mean_keys[window]


@dataclass
class CpuAttnMeta(TorchAttnMeta):
    rows: ExtendRows | None = None  # an extend's rows for the row kernel, on first use


class CpuKernelBackend(TorchNativeBackend):
    meta_type = CpuAttnMeta

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Attention,
                batch: ForwardBatch) -> torch.Tensor:
        if batch.mode == ForwardMode.EXTEND:
            # the tile kernel is plain causal only: other layers (BERT, windows, sinks) go on
            if layer.plain and batch.attend_span is None:
                out = self._tile_prefill(q, layer, batch)
                if out is not None:
                    return out
            out = self._rows(q, layer, batch)
            if out is not None:
                return out
        return super().forward(q, k, v, layer, batch)

    @staticmethod
    def _rows(q: torch.Tensor, layer: Attention, batch: ForwardBatch) -> torch.Tensor | None:
        """An extend's attention one query row at a time (decode's kernel); None where that does
        not apply (scores other than causal softmax within a window, MLA's pool, not bf16 on the
        CPU, query heads not each contiguous) or its rows see too many keys (rows_max_mean_keys)."""
        if not (layer.causal and layer.chunk is None and layer.alibi is None and layer.softcap is None
                and layer.sinks is None and batch.attend_span is None and not batch.kv_pool.values_in_keys):
            return None
        limit = rows_max_mean_keys(layer.head_dim)
        pool_k, pool_v = batch.kv_pool.keys(layer.layer_id), batch.kv_pool.values(layer.layer_id)
        if not limit or bf16_library(q, pool_k, pool_v) is None or q.stride(2) != 1 or q.stride(1) != q.shape[2]:
            return None
        if not (pool_k.is_contiguous() and pool_v.is_contiguous()):
            return None
        meta: CpuAttnMeta = batch.attn_meta
        if meta.rows is None:
            meta.rows = ExtendRows.of(batch)
        rows: ExtendRows = meta.rows
        if rows.mean(layer.sliding_window) > limit:
            return None
        return attention_rows_bf16(q, pool_k, pool_v, batch.req_to_token, rows.req, rows.kv_len, rows.max_len,
                                   layer.scaling, layer.sliding_window)

    @staticmethod
    def _tile_prefill(q: torch.Tensor, layer: Attention, batch: ForwardBatch) -> torch.Tensor | None:
        """Causal attention per request on the tile unit, reading keys through the slot table;
        None where it does not apply (not bf16 on an AMX CPU, head_dim not a multiple of 32 up
        to 128)."""
        if q.dtype != torch.bfloat16 or q.device.type != "cpu":
            return None
        out = torch.empty(q.shape[0], q.shape[1], layer.v_head_dim, dtype=q.dtype)
        pool_k, pool_v = batch.kv_pool.keys(layer.layer_id), batch.kv_pool.values(layer.layer_id)
        start = 0
        for row, prefix, length in zip(batch.req_rows.tolist(), batch.prefix_lens, batch.extend_lens):
            if not prefill_attention_bf16(q[start : start + length], pool_k, pool_v, batch.req_to_token[row], prefix,
                                          layer.scaling, out[start : start + length]):
                return None
            start += length
        return out


def select_backend(device: torch.device, name: str = "auto") -> AttentionBackend:
    """The attention backend for a device: `auto` is the C kernels' on the CPU and Triton on
    CUDA; `torch_native` is SDPA anywhere (the reference); `triton` the kernels anywhere they
    run (on the CPU only under TRITON_INTERPRET=1)."""
    from .triton_attention import TritonBackend, triton_is_default  # triton imports lazily

    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend={name!r}: use one of {', '.join(ATTENTION_BACKENDS)}")
    if name == "triton" or (name == "auto" and triton_is_default(device)):
        TritonBackend.check_usable(device)
        return TritonBackend()
    if name == "auto" and device.type == "cpu":
        return CpuKernelBackend()
    return TorchNativeBackend()
