"""Each C kernel of kernels/cpu against its torch reference, on bf16 tensors of the default
model's shapes; and the property jump-forward relies on: a row's result does not depend on
the other rows in the call. Fixtures `cpu_kernels`, `vector_kernels` and `tile_kernels`
(tests/conftest.py) skip only where the hardware or a compiler is missing."""

from __future__ import annotations

import pytest
import torch
from sgl.kernels.activation import (
    gelu_tanh_mul_bf16,
    gelu_tanh_mul_reference,
    silu_mul_bf16,
    silu_mul_reference,
)
from sgl.kernels.attention import attention_rows_bf16, attention_rows_reference, kv_store_bf16
from sgl.kernels.linear import linear_bf16, linear_reference
from sgl.kernels.norm import (
    rmsnorm_bf16,
    rmsnorm_offset_bf16,
    rmsnorm_offset_reference,
    rmsnorm_reference,
)
from sgl.kernels.rope import rope_neox_bf16_, rope_neox_reference

BF16 = torch.bfloat16


def bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference in units of b's bf16 spacing (2^-7 relative)."""
    scale = b.float().abs().clamp_min(1e-2) * 2**-7
    return ((a.float() - b.float()).abs() / scale).max().item()


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 17, 33, 70])  # past 16 and 32: more tile blocks and passes
@pytest.mark.parametrize("shape", [(960, 576), (576, 1536), (100, 64), (49, 70)])  # tails; K % 32 != 0
def test_linear_matches_reference_and_is_row_invariant(rows, shape, vector_kernels) -> None:
    torch.manual_seed(rows)
    n, k = shape
    x, w, b = torch.randn(rows, k, dtype=BF16), torch.randn(n, k, dtype=BF16), torch.randn(n, dtype=BF16)
    out = linear_bf16(x, w, b)
    assert bf16_ulps(out, linear_reference(x, w, b)) <= 1.0
    for i in range(rows):
        assert torch.equal(linear_bf16(x[i : i + 1], w, b), out[i : i + 1])


def test_rmsnorm_matches_reference_on_strided_rows(cpu_kernels) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 2 * 576, dtype=BF16)[:, :576]  # strided rows
    w = torch.randn(576, dtype=BF16)
    assert torch.equal(rmsnorm_bf16(x, w, 1e-5), rmsnorm_reference(x, w, 1e-5))


def test_gemma_rmsnorm_matches_reference_on_strided_rows(cpu_kernels) -> None:
    """Gemma's (1 + w) form, rounded once; the sum of squares runs in another order than
    torch's, so a last-bit difference may remain."""
    torch.manual_seed(0)
    x = torch.randn(5, 2 * 640, dtype=BF16)[:, :647 - 7]  # strided rows, D % 16 == 0 and a tail below
    w = torch.randn(640, dtype=BF16) * 0.1
    assert bf16_ulps(rmsnorm_offset_bf16(x, w, 1e-6, 1.0), rmsnorm_offset_reference(x, w, 1e-6, 1.0)) <= 1.0
    x, w = torch.randn(3, 37, dtype=BF16), torch.randn(37, dtype=BF16)
    assert bf16_ulps(rmsnorm_offset_bf16(x, w, 1e-6, 1.0), rmsnorm_offset_reference(x, w, 1e-6, 1.0)) <= 1.0


def test_silu_mul_matches_reference(vector_kernels) -> None:
    torch.manual_seed(0)
    gate_up = torch.randn(3, 2 * 1536, dtype=BF16)
    assert bf16_ulps(silu_mul_bf16(gate_up), silu_mul_reference(gate_up)) <= 1.0


def test_gelu_tanh_mul_matches_reference(vector_kernels) -> None:
    torch.manual_seed(0)
    gate_up = torch.randn(3, 2 * 1037, dtype=BF16) * 4  # a tail past the vectors; large |gate| saturates tanh
    assert bf16_ulps(gelu_tanh_mul_bf16(gate_up), gelu_tanh_mul_reference(gate_up)) <= 1.0


@pytest.mark.parametrize("rotary_dim", [64, 32])
def test_rope_in_place_matches_reference(rotary_dim, cpu_kernels) -> None:
    torch.manual_seed(0)
    tokens, q_heads, kv_heads, d = 4, 9, 3, 64
    qkv = torch.randn(tokens, (q_heads + 2 * kv_heads) * d, dtype=BF16)
    heads = qkv[:, : (q_heads + kv_heads) * d].view(tokens, q_heads + kv_heads, d)
    angles = torch.rand(tokens, rotary_dim // 2) * 6
    cos, sin = angles.cos().to(BF16), angles.sin().to(BF16)
    expected = rope_neox_reference(heads.clone(), cos, sin, rotary_dim)
    v_before = qkv[:, (q_heads + kv_heads) * d :].clone()
    rope_neox_bf16_(heads, cos, sin, rotary_dim)
    assert torch.equal(heads, expected)
    assert torch.equal(qkv[:, (q_heads + kv_heads) * d :], v_before)  # v untouched


@pytest.mark.parametrize("window", [None, 7])
@pytest.mark.parametrize("heads,kv_heads,d", [(9, 3, 64), (4, 4, 64), (8, 4, 32), (4, 1, 256), (10, 2, 64),
                                              (8, 1, 16)])
def test_attention_rows_match_reference_and_do_not_depend_on_their_neighbours(window, heads, kv_heads, d,
                                                                             cpu_kernels) -> None:
    """Every group size the vector paths specialize (1..8 query heads a kv head, keys and value
    dims in blocks with tails), rows of different lengths in one call."""
    torch.manual_seed(0)
    slots = 200
    k_pool, v_pool = torch.randn(slots, kv_heads, d, dtype=BF16), torch.randn(slots, kv_heads, d, dtype=BF16)
    table = torch.stack([torch.randperm(slots - 1)[:60] + 1 for _ in range(3)])  # (3 requests, 60 slots)
    q = torch.randn(6, heads, d, dtype=BF16)
    q_req = torch.tensor([0, 1, 1, 1, 2, 0])
    kv_len = torch.tensor([5, 40, 41, 42, 60, 1])
    out = attention_rows_bf16(q, k_pool, v_pool, table, q_req, kv_len, 60, 0.125, window)
    ref = attention_rows_reference(q, k_pool, v_pool, table, q_req, kv_len, 0.125, window)
    assert (out.float() - ref.float()).abs().max() < 2e-2
    for i in range(6):  # a decode row (alone) equals the same query inside an extend
        alone = attention_rows_bf16(q[i : i + 1], k_pool, v_pool, table, q_req[i : i + 1], kv_len[i : i + 1],
                                    int(kv_len[i]), 0.125, window)
        assert torch.equal(alone, out[i : i + 1])


def test_kv_store_writes_strided_rows_into_their_slots(cpu_kernels) -> None:
    torch.manual_seed(0)
    k_pool, v_pool = torch.zeros(10, 3, 8, dtype=BF16), torch.zeros(10, 3, 8, dtype=BF16)
    qkv = torch.randn(4, 9 * 8 + 2 * 3 * 8, dtype=BF16)
    k = qkv[:, 72:96].view(4, 3, 8)
    v = qkv[:, 96:].view(4, 3, 8)
    slots = torch.tensor([7, 2, 9, 4])
    assert kv_store_bf16(k_pool, v_pool, slots, k, v)
    assert torch.equal(k_pool[slots], k) and torch.equal(v_pool[slots], v)
    assert k_pool[[0, 1, 3, 5, 6, 8]].abs().sum() == 0


def test_residual_add_matches_torch(vector_kernels) -> None:
    from sgl.kernels.activation import add_bf16

    torch.manual_seed(0)
    a, b = torch.randn(7, 577, dtype=BF16), torch.randn(7, 577, dtype=BF16)  # a tail past whole vectors
    assert torch.equal(add_bf16(a, b), a + b)
    assert add_bf16(a.float(), b.float()) is None


# one key chunk (64 keys) or several, a prefix across a chunk boundary, partial query blocks, d = 128
@pytest.mark.parametrize("prefix,tokens,d", [(0, 40, 64), (23, 17, 64), (0, 5, 64), (0, 150, 64), (70, 90, 64),
                                             (10, 100, 128)])
def test_prefill_attention_matches_reference(prefix, tokens, d, tile_kernels) -> None:
    from sgl.kernels.attention import prefill_attention_bf16

    torch.manual_seed(prefix + tokens)
    heads, kv_heads, slots = 9, 3, 256
    k_pool, v_pool = torch.randn(slots, kv_heads, d, dtype=BF16), torch.randn(slots, kv_heads, d, dtype=BF16)
    table = (torch.randperm(slots - 1)[: prefix + tokens] + 1)[None]  # one request
    qkv = torch.randn(tokens, 2 * heads * d, dtype=BF16)
    q = qkv[:, : heads * d].view(tokens, heads, d)  # strided rows, as in the fused qkv output
    out = torch.empty(tokens, heads, d, dtype=BF16)
    assert prefill_attention_bf16(q, k_pool, v_pool, table[0], prefix, 0.125, out)  # the tile path ran
    ref = attention_rows_reference(q, k_pool, v_pool, table, torch.zeros(tokens, dtype=torch.int64),
                                   torch.arange(prefix + 1, prefix + tokens + 1), 0.125)
    assert (out.float() - ref.float()).abs().max() < 3e-2  # P enters the tile product in bf16
    assert (out.float() - ref.float()).abs().mean() < 3e-3


# tile blocks of 16 and 32 rows, tails, threads splitting the rows (128+), bands of rows (K = 1536: 320 a band)
@pytest.mark.parametrize("rows", [1, 5, 16, 17, 33, 70, 130, 700])
@pytest.mark.parametrize("shape", [(960, 576), (576, 1536), (100, 64)])  # N not a multiple of 32: padded panels
def test_packed_linear_matches_reference_and_is_row_invariant(rows, shape, tile_kernels) -> None:
    from sgl.kernels.linear import linear_tiles, linear_tiles_reference, pack_tiles, unpack_tiles

    torch.manual_seed(rows)
    n, k = shape
    x, w, b = torch.randn(rows, k, dtype=BF16), torch.randn(n, k, dtype=BF16) / k**0.5, torch.randn(n, dtype=BF16)
    residual = torch.randn(rows, n, dtype=BF16)
    tiles = pack_tiles(w)
    assert torch.equal(unpack_tiles(tiles, n), w)
    out = linear_tiles(x, tiles, n, b)
    assert bf16_ulps(out, linear_tiles_reference(x, w, b)) <= 1.0
    with_residual = linear_tiles(x, tiles, n, b, residual)
    assert torch.equal(with_residual, residual + out)  # the add inside rounds as the separate add does
    for i in (0, rows // 2, rows - 1):  # a row alone gives the bits it gets among the others
        assert torch.equal(linear_tiles(x[i : i + 1], tiles, n, b), out[i : i + 1])


@pytest.mark.parametrize("rows", [1, 33, 130])
def test_gated_packed_linear_gives_silu_of_gate_times_up(rows, tile_kernels) -> None:
    from sgl.kernels.linear import linear_tiles, pack_tiles, unpack_tiles

    torch.manual_seed(rows)
    inter, k = 1536, 576
    x, w = torch.randn(rows, k, dtype=BF16), torch.randn(2 * inter, k, dtype=BF16) / k**0.5
    tiles = pack_tiles(w, gated=True)
    assert torch.equal(unpack_tiles(tiles, 2 * inter, gated=True), w)
    out = linear_tiles(x, tiles, 2 * inter, gated=True)
    unfused = silu_mul_bf16(linear_tiles(x, pack_tiles(w), 2 * inter))  # the product, then the silu kernel
    assert torch.equal(out, unfused)
    assert bf16_ulps(out, silu_mul_reference(linear_reference(x, w))) <= 2.0
    assert torch.equal(linear_tiles(x[-1:], tiles, 2 * inter, gated=True), out[-1:])
