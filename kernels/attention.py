"""Attention of single query rows over the paged KV pool on the CPU
(kernels/cpu/attention_bf16.c), and its torch reference."""

from __future__ import annotations

import torch

from .cpu import Level, bf16_library, dispatch, isa, tile_path


def attention_rows_reference(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor,
                             q_req: torch.Tensor, kv_len: torch.Tensor, scale: float,
                             window: int | None = None) -> torch.Tensor:
    """q (rows, heads, d); query row i sees the first kv_len[i] slots of table[q_req[i]] (the
    last `window` of them with a sliding window) -> (rows, heads, dv), float32 inside."""
    out = []
    for i in range(q.shape[0]):
        n = int(kv_len[i])
        first = max(0, n - window) if window else 0
        slots = table[int(q_req[i]), first:n]
        k, v = k_pool[slots].float(), v_pool[slots].float()  # (n, kv_heads, d)
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,nhd->hn", q[i].float(), k) * scale
        out.append(torch.einsum("hn,nhd->hd", scores.softmax(-1), v))
    return torch.stack(out).to(q.dtype)


def attention_rows_bf16(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor,
                        q_req: torch.Tensor, kv_len: torch.Tensor, max_len: int, scale: float,
                        window: int | None = None) -> torch.Tensor:
    """As the reference; q's rows may be strided, the pools and table contiguous, q_req and
    kv_len int64; max_len >= every kv_len (sizes each thread's scores)."""
    lib = bf16_library(q, k_pool, v_pool)
    assert lib is not None, (q.dtype, k_pool.dtype)  # attention rows apply at every level
    dispatch["attention_rows"] += 1
    rows, heads, d = q.shape
    kv_heads, dv = v_pool.shape[1], v_pool.shape[2]
    assert q.stride(2) == 1 and q.stride(1) == d and k_pool.is_contiguous() and v_pool.is_contiguous()
    assert table.is_contiguous() and table.dtype == q_req.dtype == kv_len.dtype == torch.int64
    out = torch.empty(rows, heads, dv, dtype=torch.bfloat16)
    lib.sgl_attention_rows_bf16(q.data_ptr(), q.stride(0), k_pool.data_ptr(), v_pool.data_ptr(), table.data_ptr(),
                                table.stride(0), q_req.data_ptr(), kv_len.data_ptr(), out.data_ptr(), rows, heads,
                                kv_heads, d, dv, max_len, scale, window or 0)
    return out


def kv_store_bf16(k_pool: torch.Tensor, v_pool: torch.Tensor, slots: torch.Tensor, k: torch.Tensor,
                  v: torch.Tensor) -> bool:
    """k_pool[slots] = k; v_pool[slots] = v for bf16 CPU tensors whose token rows share one
    stride (views of the fused qkv output). Returns False, doing nothing, for any other layout."""
    lib = bf16_library(k, v, k_pool, v_pool)
    if lib is None:
        return False
    tokens = k.shape[0]
    k_width, v_width = k[0].numel(), v[0].numel()
    if k.stride(0) != v.stride(0) or k.stride(-1) != 1 or v.stride(-1) != 1 or slots.dtype != torch.int64:
        return False
    if (k.dim() == 3 and k.stride(1) != k.shape[2]) or (v.dim() == 3 and v.stride(1) != v.shape[2]):
        return False
    slots = slots.contiguous()
    dispatch["kv_store"] += 1
    lib.sgl_kv_store_bf16(k_pool.data_ptr(), v_pool.data_ptr(), k.data_ptr(), v.data_ptr(), k.stride(0),
                          slots.data_ptr(), tokens, k_width, v_width)
    return True


def prefill_attention_applies(head_dim: int) -> bool:
    """Whether `prefill_attention_bf16` runs for heads of this width: AMX usable here, head_dim
    a multiple of 32 up to 128 (the kernel keeps a query block's O rows, 16 x 128 floats)."""
    return head_dim % 32 == 0 and head_dim <= 128 and isa().level >= Level.AMX and tile_path()


def prefill_attention_bf16(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, slots: torch.Tensor,
                           prefix: int, scale: float, out: torch.Tensor) -> bool:
    """Causal attention of one request's new tokens on the tile unit: q (tokens, heads, d) at
    positions prefix.. (rows may be strided), keys and values of slots[:prefix + tokens] in the
    pools; writes out (tokens, heads, d), contiguous. Returns False, writing nothing, where the
    kernel does not apply (no AMX, d % 32 != 0 or d > 128, other dtypes): the reference is
    `attention_rows_reference` with one row per token."""
    lib = bf16_library(q, k_pool, v_pool)
    if lib is None:
        return False
    tokens, heads, d = q.shape
    if not prefill_attention_applies(d) or q.stride(2) != 1 or q.stride(1) != d or v_pool.shape[2] != d or not out.is_contiguous():
        return False
    assert slots.dtype == torch.int64 and slots.is_contiguous() and slots.shape[0] >= prefix + tokens
    dispatch["prefill_attention"] += 1
    return bool(lib.sgl_prefill_attention_bf16(q.data_ptr(), q.stride(0), k_pool.data_ptr(), v_pool.data_ptr(),
                                               slots.data_ptr(), prefix, tokens, heads, k_pool.shape[1], d, scale,
                                               out.data_ptr()))
