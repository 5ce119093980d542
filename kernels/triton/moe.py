"""Fused Mixture-of-Experts: the tokens routed to each expert gathered into blocks of
`block_m` rows (the align step), then one grouped GEMM launch per weight, each program taking
one block of one expert. With its torch reference (a loop over the experts).

    topk_ids (tokens, k) -> flat ids f = t * k + j, sorted by expert, each expert's run padded
    to a multiple of block_m with the id tokens * k (no row):

    sorted_ids: | e0: f f f pad | e1: f pad pad pad | e3: f f f f | f ... |
    expert_ids: |      0        |        1          |      3      |   ... | -1 (unused blocks)

NOTE: the align step's output sizes are fixed by (tokens, k, experts, block_m), never by the
routing, so the step runs on the device without a host sync and a CUDA graph can hold it.
w1 (experts, 2 * inter, hidden) is [gate; up], w2 (experts, hidden, inter), as SGLang stacks them.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import check, upcast_dots

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


def moe_reference(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                  topk_ids: torch.Tensor) -> torch.Tensor:
    """x (tokens, hidden) -> sum_j topk_weights[t, j] * expert_{topk_ids[t, j]}(x[t]); float32 inside."""
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    inter = w1.shape[1] // 2
    for e in topk_ids.unique().tolist():
        t, j = (topk_ids == e).nonzero(as_tuple=True)
        h = x[t].float() @ w1[e].float().T  # (n, 2 * inter)
        h = F.silu(h[:, :inter]) * h[:, inter:]
        out.index_add_(0, t, (h @ w2[e].float().T) * topk_weights[t, j].float()[:, None])
    return out.to(x.dtype)


def moe_align_block_size(topk_ids: torch.Tensor, num_experts: int,
                         block_m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> sorted_ids (max_padded,) int64, expert_ids (max_padded // block_m,) int64 (-1 past the
    used blocks), num_padded () int64: the rows of sorted_ids in use. In torch on the device."""
    check(topk_ids.dim() == 2 and not topk_ids.is_floating_point(), "topk_ids must be an integer (tokens, k) tensor")
    flat = topk_ids.flatten().long()
    n = flat.numel()
    max_padded = triton.cdiv(n + num_experts * (block_m - 1), block_m) * block_m
    counts = torch.bincount(flat, minlength=num_experts)[:num_experts]
    padded = (counts + block_m - 1) // block_m * block_m
    ends = torch.cumsum(padded, 0)
    starts = ends - padded
    order = torch.argsort(flat, stable=True)  # flat ids, by expert
    expert_of = flat[order]
    rank = torch.arange(n, device=flat.device) - (torch.cumsum(counts, 0) - counts)[expert_of]
    sorted_ids = torch.full((max_padded,), n, dtype=torch.int64, device=flat.device)
    sorted_ids[starts[expert_of] + rank] = order
    block_starts = torch.arange(0, max_padded, block_m, device=flat.device)
    expert_ids = torch.searchsorted(ends, block_starts, right=True)
    expert_ids = torch.where(block_starts < ends[-1], expert_ids, -1)
    return sorted_ids, expert_ids, ends[-1]


if triton is not None:

    @triton.jit
    def _moe_gemm_kernel(A, W, C, SortedIds, ExpertIds, NumPadded, TopkWeights, N, K, num_ids,
                         stride_am, stride_we, stride_wn, stride_cm, TOPK: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                         MUL_WEIGHTS: tl.constexpr, UPCAST: tl.constexpr):
        """C[f] = A[f // TOPK] @ W[e].T (times topk_weights[f]) for the ids f of one block."""
        pid_m, pid_n = tl.program_id(0), tl.program_id(1)
        e = tl.load(ExpertIds + pid_m)
        if (pid_m * BLOCK_M < tl.load(NumPadded)) & (e >= 0):
            ids = tl.load(SortedIds + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
            valid = ids < num_ids
            offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
            acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
            for k0 in range(0, K, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                a = tl.load(A + (ids // TOPK)[:, None] * stride_am + offs_k[None, :],
                            mask=valid[:, None] & (offs_k[None, :] < K), other=0.0)  # (M, BK)
                w = tl.load(W + e * stride_we + offs_n[None, :] * stride_wn + offs_k[:, None],
                            mask=(offs_n[None, :] < N) & (offs_k[:, None] < K), other=0.0)  # (BK, BN)
                if UPCAST:
                    a, w = a.to(tl.float32), w.to(tl.float32)
                acc += tl.dot(a, w)
            if MUL_WEIGHTS:
                acc *= tl.load(TopkWeights + ids, mask=valid, other=0.0).to(tl.float32)[:, None]
            tl.store(C + ids[:, None] * stride_cm + offs_n[None, :], acc.to(C.dtype.element_ty),
                     mask=valid[:, None] & (offs_n[None, :] < N))


def moe_gemm(a: torch.Tensor, w: torch.Tensor, out: torch.Tensor, sorted_ids: torch.Tensor, expert_ids: torch.Tensor,
             num_padded: torch.Tensor, topk: int, block_m: int, topk_weights: torch.Tensor | None = None,
             block_n: int = 32, block_k: int = 32) -> torch.Tensor:
    """out[f] = a[f // topk] @ w[expert of f].T (* topk_weights.flatten()[f]); a (rows, K) with K
    contiguous, w (experts, N, K) contiguous, out (ids, N) contiguous."""
    check(a.dim() == 2 and a.stride(1) == 1, "a must be (rows, K) with K contiguous")
    check(w.dim() == 3 and w.is_contiguous() and w.shape[2] == a.shape[1] and w.dtype == a.dtype,
          f"w must be a contiguous (experts, N, K={a.shape[1]}) tensor of a's dtype")
    check(out.is_contiguous() and out.shape[1] == w.shape[1] and out.dtype == a.dtype, "out must be a contiguous (ids, N) tensor")
    check(sorted_ids.dtype == expert_ids.dtype == torch.int64, "sorted_ids and expert_ids come from moe_align_block_size")
    check(sorted_ids.shape[0] == expert_ids.shape[0] * block_m, f"sorted_ids and expert_ids disagree with block_m {block_m}")
    if topk_weights is not None:
        check(topk_weights.is_contiguous() and topk_weights.numel() == out.shape[0], "topk_weights must be (tokens, k), contiguous")
    grid = (expert_ids.shape[0], triton.cdiv(w.shape[1], block_n))
    _moe_gemm_kernel[grid](a, w, out, sorted_ids, expert_ids, num_padded,
                           topk_weights if topk_weights is not None else a, w.shape[1], w.shape[2], out.shape[0],
                           a.stride(0), w.stride(0), w.stride(1), out.stride(0), TOPK=topk, BLOCK_M=block_m,
                           BLOCK_N=block_n, BLOCK_K=block_k, MUL_WEIGHTS=topk_weights is not None,
                           UPCAST=upcast_dots(a.dtype))
    return out


def fused_moe(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
              topk_ids: torch.Tensor, block_m: int = 16) -> torch.Tensor:
    """As `moe_reference`: x (tokens, hidden), w1 (experts, 2 * inter, hidden), w2 (experts,
    hidden, inter), topk_weights/topk_ids (tokens, k)."""
    tokens, hidden = x.shape
    check(w1.dim() == 3 and w2.dim() == 3 and w1.shape[0] == w2.shape[0], "w1 and w2 must stack the same experts")
    check(w1.shape[2] == hidden and w2.shape[1] == hidden and w1.shape[1] == 2 * w2.shape[2],
          f"w1 must be (experts, 2 * inter, {hidden}) and w2 (experts, {hidden}, inter)")
    check(topk_ids.shape == topk_weights.shape and topk_ids.shape[0] == tokens,
          f"topk_ids and topk_weights must both be ({tokens}, k)")
    k = topk_ids.shape[1]
    sorted_ids, expert_ids, num_padded = moe_align_block_size(topk_ids, w1.shape[0], block_m)
    h = torch.empty(tokens * k, w1.shape[1], dtype=x.dtype, device=x.device)  # (ids, 2 * inter)
    moe_gemm(x, w1, h, sorted_ids, expert_ids, num_padded, k, block_m)
    inter = w2.shape[2]
    act = (F.silu(h[:, :inter].float()) * h[:, inter:].float()).to(x.dtype)  # (ids, inter)
    y = torch.empty(tokens * k, hidden, dtype=x.dtype, device=x.device)
    moe_gemm(act, w2, y, sorted_ids, expert_ids, num_padded, 1, block_m, topk_weights.to(torch.float32).contiguous())
    return y.view(tokens, k, hidden).float().sum(1).to(x.dtype)
