"""KV storage behind one interface. One slot holds what attention keeps for one token in every
layer; what that is depends on the pool: per-head keys and values (MHA/GQA, `MHAKVPool`), one
compressed latent (MLA), later a recurrent state.

A pool is made in two steps: its layout first, so memory sizing can ask `bytes_per_token()`,
then `allocate(num_slots)`. Slot 0 is never handed out: padded gathers read it, so it must
hold finite values (zeros).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from sgl.kernels.attention import kv_store_bf16


class KVPool(ABC):
    """What the engine and the attention layers need of any pool."""

    num_slots: int = 0
    values_in_keys: bool = False  # values(layer) is a view of keys(layer)'s first channels (MLA)

    @abstractmethod
    def bytes_per_token(self) -> int:
        """Bytes one token takes across every layer (memory sizing asks this)."""

    @abstractmethod
    def allocate(self, num_slots: int) -> None:
        """Makes the buffers: slots 1..num_slots (and slot 0, zeros)."""

    @abstractmethod
    def store(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Writes the new tokens' entries of `layer` into `slots` (tokens,)."""


class MHAKVPool(KVPool):
    """Per-head keys and values: `keys(layer)` (num_slots + 1, kv_heads, head_dim) and
    `values(layer)` (num_slots + 1, kv_heads, v_head_dim)."""

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | str = "cpu", v_head_dim: int | None = None) -> None:
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.dtype, self.device = dtype, torch.device(device)
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []

    def bytes_per_token(self) -> int:
        size = torch.empty((), dtype=self.dtype).element_size()
        return self.num_layers * self.kv_heads * (self.head_dim + self.v_head_dim) * size

    def allocate(self, num_slots: int) -> None:
        self.num_slots = num_slots
        shape = (num_slots + 1, self.kv_heads)
        self._k = [torch.zeros(*shape, self.head_dim, dtype=self.dtype, device=self.device)
                   for _ in range(self.num_layers)]
        self._v = [torch.zeros(*shape, self.v_head_dim, dtype=self.dtype, device=self.device)
                   for _ in range(self.num_layers)]

    def keys(self, layer: int) -> torch.Tensor:
        return self._k[layer]

    def values(self, layer: int) -> torch.Tensor:
        return self._v[layer]

    def store(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v (tokens, kv_heads, head_dim)."""
        if kv_store_bf16(self._k[layer], self._v[layer], slots, k, v):  # one call, strided rows read in place
            return
        # NOTE: index_copy_ is a plain loop; `buf[slots] = k` (index_put_) goes through a
        # parallel kernel that costs milliseconds when another process holds the second core.
        self._k[layer].index_copy_(0, slots, k)
        self._v[layer].index_copy_(0, slots, v)


class MLAKVPool(KVPool):
    """Multi-head Latent Attention (DeepSeek V2/V3): per token and layer one row of
    kv_lora_rank + rope_dim channels, the compressed latent c and the shared rope key side by
    side, whatever the number of heads.

    Attention over the latent is multi-query attention with one head whose key is the whole row
    and whose value is the latent, the row's first kv_lora_rank channels: `keys(layer)`
    (num_slots + 1, 1, kv_lora_rank + rope_dim) and `values(layer)`, a view of the same
    storage, (num_slots + 1, 1, kv_lora_rank). So every backend that attends over keys()/values()
    serves it, and `store` writes only the rows."""

    values_in_keys = True  # values(layer) is keys(layer)[..., :kv_lora_rank]: backends gather once

    def __init__(self, num_layers: int, kv_lora_rank: int, rope_dim: int, dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> None:
        self.num_layers, self.kv_lora_rank, self.rope_dim = num_layers, kv_lora_rank, rope_dim
        self.dtype, self.device = dtype, torch.device(device)
        self._rows: list[torch.Tensor] = []

    @property
    def row_dim(self) -> int:
        return self.kv_lora_rank + self.rope_dim

    def bytes_per_token(self) -> int:
        return self.num_layers * self.row_dim * torch.empty((), dtype=self.dtype).element_size()

    def allocate(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self._rows = [torch.zeros(num_slots + 1, 1, self.row_dim, dtype=self.dtype, device=self.device)
                      for _ in range(self.num_layers)]

    def keys(self, layer: int) -> torch.Tensor:
        return self._rows[layer]

    def values(self, layer: int) -> torch.Tensor:
        return self._rows[layer][:, :, : self.kv_lora_rank]  # NOTE: a strided view, not a copy

    def store(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """k (tokens, 1, kv_lora_rank + rope_dim): the rows [latent, rope key]; v, the latent,
        is k's first channels and is not written twice."""
        if k.shape[-1] != self.row_dim:
            raise ValueError(f"MLA rows have {self.row_dim} channels (kv_lora_rank + rope_dim), got {k.shape[-1]}")
        self._rows[layer].index_copy_(0, slots, k.view(-1, 1, self.row_dim))
