"""Attention backends, chosen by device behind one small interface.

A backend makes its metadata once per batch (`prepare`, a dataclass of its own) and attends for
every layer (`forward`). A model file only calls `Attention`, which calls the batch's backend:

- `TorchNativeBackend` (torch_attention.py): SDPA over the pool, any device; the reference.
- `CpuKernelBackend`: the torch backend, with causal prefill on the CPU's tile unit where the C
  kernels apply (kernels/cpu/prefill_attention_bf16.c; ~2x SDPA at 512 tokens).
- `TritonBackend` (triton_attention.py): the Triton kernels over the paged pool; CUDA's default,
  and on the CPU under TRITON_INTERPRET=1 (tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch
from sgl.kernels.attention import prefill_attention_bf16

from ..config import ATTENTION_BACKENDS
from ..forward_batch import ForwardBatch, ForwardMode
from .torch_attention import TorchNativeBackend

if TYPE_CHECKING:
    from .attention import Attention


class AttentionBackend(Protocol):
    def prepare(self, batch: ForwardBatch) -> Any:
        """The batch's metadata (gather indices, masks): made once, read by every layer."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Attention,
                batch: ForwardBatch) -> torch.Tensor:
        """q (tokens, heads, d), k/v (tokens, kv_heads, d) of the new tokens, already stored
        in the pool -> (tokens, heads, dv)."""


class CpuKernelBackend(TorchNativeBackend):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Attention,
                batch: ForwardBatch) -> torch.Tensor:
        # the tile kernel is plain causal only: other layers (BERT, windows, sinks) take SDPA
        if batch.mode == ForwardMode.EXTEND and layer.plain and batch.attend_span is None:
            out = self._tile_prefill(q, layer, batch)
            if out is not None:
                return out
        return super().forward(q, k, v, layer, batch)

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
