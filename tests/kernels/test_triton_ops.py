"""The Triton RMS norm, rope and fused MoE kernels (kernels/triton) against their torch
references; interpreted on the CPU at small shapes, compiled where CUDA is."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from sgl.kernels.triton.moe import fused_moe, moe_align_block_size, moe_reference  # noqa: E402
from sgl.kernels.triton.norm import add_rmsnorm, add_rmsnorm_reference  # noqa: E402
from sgl.kernels.triton.rope import rope_, rope_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# NOTE: bf16 gets 1 ulp: the interpreter rounds to bf16 through numpy, not as torch does
TOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}


def rand(*shape: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("d", [64, 96])  # 96: a block wider than the row
@pytest.mark.parametrize("with_residual", [True, False])
def test_add_rmsnorm_matches_reference(dtype, d, with_residual) -> None:
    x = rand(6, 2 * d, dtype=dtype, seed=0)[:, :d]  # strided rows, as a view of a wider output
    residual = rand(6, d, dtype=dtype, seed=1) if with_residual else None
    w = rand(d, dtype=dtype, seed=2)
    out, h = add_rmsnorm(x, residual, w, 1e-6)
    ref_out, ref_h = add_rmsnorm_reference(x, residual, w, 1e-6)
    tol = TOL[dtype]
    torch.testing.assert_close(h.float(), ref_h.float(), atol=tol * 4, rtol=tol)
    torch.testing.assert_close(out.float(), ref_out.float(), atol=tol * 4, rtol=tol)


def cos_sin_cache(rotary_dim: int, positions: int) -> torch.Tensor:
    inv = 1.0 / 10000 ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim)
    freqs = torch.arange(positions).float()[:, None] * inv[None, :]
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1).to(DEVICE)  # (positions, rotary_dim)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim,rotary_dim,interleaved", [(64, 64, False), (128, 64, False), (64, 64, True)],
                         ids=["neox", "partial", "interleaved"])
def test_rope_matches_reference(dtype, head_dim, rotary_dim, interleaved) -> None:
    qkv = rand(7, 3 * 6 * head_dim, dtype=dtype, seed=3).view(7, 18, head_dim)
    q, k = qkv[:, :6], qkv[:, 6:10]  # views of one fused qkv output, tokens strided
    positions = torch.tensor([0, 5, 1, 99, 42, 7, 63], device=DEVICE)
    cache = cos_sin_cache(rotary_dim, 100)
    ref_q, ref_k = rope_reference(q, positions, cache, rotary_dim, interleaved), rope_reference(k, positions, cache, rotary_dim, interleaved)
    untouched = qkv[:, 10:].clone()
    rope_(q, positions, cache, rotary_dim, interleaved)
    rope_(k, positions, cache, rotary_dim, interleaved)
    tol = TOL[dtype]
    torch.testing.assert_close(q.float(), ref_q.float(), atol=tol * 4, rtol=tol)
    torch.testing.assert_close(k.float(), ref_k.float(), atol=tol * 4, rtol=tol)
    assert torch.equal(qkv[:, 10:], untouched)  # v is not written


def test_moe_align_puts_every_routed_token_once_in_its_experts_blocks() -> None:
    topk_ids = torch.randint(0, 6, (13, 3), generator=torch.Generator().manual_seed(4)).to(DEVICE)
    topk_ids[:, 0] = 2  # a crowded expert; expert 7 gets none
    sorted_ids, expert_ids, num_padded = moe_align_block_size(topk_ids, 8, 4)
    flat = topk_ids.flatten()
    n = int(num_padded)
    assert n % 4 == 0 and sorted_ids.shape[0] == expert_ids.shape[0] * 4
    real = sorted_ids[:n][sorted_ids[:n] < flat.numel()]
    assert sorted(real.tolist()) == list(range(flat.numel()))  # each routed (token, j) once
    assert (sorted_ids[n:] == flat.numel()).all() and (expert_ids[n // 4 :] == -1).all()
    block_expert = expert_ids[: n // 4].repeat_interleave(4)
    ids = sorted_ids[:n]
    assert (flat[ids[ids < flat.numel()]] == block_expert[ids < flat.numel()]).all()  # right expert's block
    assert 7 not in expert_ids.tolist()


@pytest.mark.parametrize("dtype,tokens,experts,topk",
                         [(torch.float16, 11, 6, 2), (torch.bfloat16, 11, 6, 2), (torch.float32, 11, 6, 2),
                          (torch.float16, 1, 4, 2), (torch.bfloat16, 9, 8, 1)])
def test_fused_moe_matches_reference(dtype, tokens, experts, topk) -> None:
    hidden, inter = 64, 48  # inter: not a multiple of the 32-wide column blocks
    x = rand(tokens, hidden, dtype=dtype, seed=5)
    w1 = rand(experts, 2 * inter, hidden, dtype=dtype, seed=6) * 0.1
    w2 = rand(experts, hidden, inter, dtype=dtype, seed=7) * 0.1
    logits = torch.randn(tokens, experts, generator=torch.Generator().manual_seed(8)).to(DEVICE)
    topk_weights, topk_ids = logits.softmax(-1).topk(topk)
    out = fused_moe(x, w1, w2, topk_weights, topk_ids)
    ref = moe_reference(x, w1, w2, topk_weights, topk_ids)
    fp32 = 5e-3 if DEVICE == "cuda" else 1e-4  # compiled, tl.dot on float32 runs in tf32
    tol = {torch.float32: fp32, torch.float16: 3e-3, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


def test_wrappers_name_the_bad_field() -> None:
    x = rand(3, 64, dtype=torch.float16, seed=0)
    with pytest.raises(ValueError, match="weight"):
        add_rmsnorm(x, None, rand(32, dtype=torch.float16, seed=1), 1e-6)
    with pytest.raises(ValueError, match="positions"):
        rope_(x.view(3, 1, 64), torch.zeros(3, dtype=torch.int32, device=DEVICE), cos_sin_cache(64, 4), 64)
    with pytest.raises(ValueError, match="w1"):
        fused_moe(x, rand(2, 10, 64, dtype=torch.float16, seed=2), rand(2, 64, 4, dtype=torch.float16, seed=3),
                  torch.ones(3, 1, device=DEVICE), torch.zeros(3, 1, dtype=torch.int64, device=DEVICE))
