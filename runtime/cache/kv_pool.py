"""Per-layer KV storage. One slot holds the key and value of one token in every layer."""

from __future__ import annotations

import torch
from sgl.kernels.attention import kv_store_bf16


class KVPool:
    """`k[layer]`, `v[layer]`: (num_slots + 1, kv_heads, head_dim). Slot 0 is never handed out:
    padded gathers read it, so it must hold finite values (zeros)."""

    def __init__(self, num_slots: int, num_layers: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str = "cpu", v_head_dim: int | None = None) -> None:
        self.num_slots, self.num_layers = num_slots, num_layers
        self.kv_heads, self.head_dim = kv_heads, head_dim
        v_dim = v_head_dim or head_dim
        self.k = [torch.zeros(num_slots + 1, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(num_slots + 1, kv_heads, v_dim, dtype=dtype, device=device) for _ in range(num_layers)]

    def store(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Writes k, v (tokens, kv_heads, head_dim) into `slots` (tokens,) of `layer`."""
        if kv_store_bf16(self.k[layer], self.v[layer], slots, k, v):  # one call, strided rows read in place
            return
        # NOTE: index_copy_ is a plain loop; `buf[slots] = k` (index_put_) goes through a
        # parallel kernel that costs milliseconds when another process holds the second core.
        self.k[layer].index_copy_(0, slots, k)
        self.v[layer].index_copy_(0, slots, v)

    @staticmethod
    def bytes_per_token(num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()
