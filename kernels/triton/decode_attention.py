"""Decode attention over the paged KV pool with split-KV: one query row per request, its keys
(slots table[row, 0 : seq_len]) cut into `num_splits` ranges that run in parallel (stage 1
writes each range's normalized output and log-sum-exp), then merged (stage 2).

Two stage-1 kernels:
- per head: one program per (request, head, split), vector products (MHA, small groups);
- grouped: one program per (request, kv head, split) for a block of the query heads that share
  the kv head, so the scores are one `tl.dot` (GQA; MLA, where one latent (slots, 1, 576) is
  the key of every head and its first 512 columns the value: pass v_pool = k_pool[..., :512]).
  Head dims that are no power of two (MLA's 576) are read as a power-of-two part plus the rest
  (512 + 64), not padded to 1024.

Flags as in extend attention: window, softcap, ALiBi (the query sits at position seq_len - 1)
in stage 1; sinks in stage 2, where they join the merged denominator.
"""

from __future__ import annotations

import torch

from . import check, next_pow2, upcast_dots
from .extend_attention import _check_flags, _check_pool_and_table, extend_attention_reference

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


def decode_attention_reference(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor,
                               req_rows: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                               window: int | None = None, softcap: float | None = None,
                               sinks: torch.Tensor | None = None, alibi: torch.Tensor | None = None) -> torch.Tensor:
    """q (batch, heads, d), the query of request b at position seq_lens[b] - 1 -> (batch, heads, dv).
    NOTE: a decode step is an extend of one token whose prefix is seq_len - 1."""
    batch = q.shape[0]
    ones = torch.ones(batch, dtype=torch.int64, device=q.device)
    return extend_attention_reference(q, k_pool, v_pool, table, req_rows, torch.arange(batch, device=q.device),
                                      seq_lens - 1, ones, scale, window, softcap, sinks, alibi)


if triton is not None:

    @triton.jit
    def _split_range(seq, split, window, SPLITS: tl.constexpr, HAS_WINDOW: tl.constexpr):
        first = 0
        if HAS_WINDOW:
            first = tl.maximum(seq - window, 0)
        per = tl.cdiv(seq - first, SPLITS)
        start = first + split * per
        return start, tl.minimum(start + per, seq)

    @triton.jit
    def _decode_head_kernel(Q, K, V, MidO, MidL, Table, ReqRows, SeqLens, Alibi,
                            stride_qb, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_table,
                            scale, softcap, window,
                            GROUP: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, BLOCK_D: tl.constexpr,
                            BLOCK_DV: tl.constexpr, BLOCK_N: tl.constexpr, SPLITS: tl.constexpr,
                            HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr):
        b, h, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        heads = tl.num_programs(1)
        row = tl.load(ReqRows + b)
        seq = tl.load(SeqLens + b)
        start, end = _split_range(seq, split, window, SPLITS, HAS_WINDOW)
        kv_h = h // GROUP
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        q = tl.load(Q + b * stride_qb + h * stride_qh + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)
        if HAS_ALIBI:
            slope = tl.load(Alibi + h).to(tl.float32)
        # 0-d float32 tensors, not Python floats: loop-carried values keep one type when compiled
        m_i = tl.max(tl.full([BLOCK_N], float("-inf"), tl.float32), 0)
        l_i = tl.sum(tl.zeros([BLOCK_N], tl.float32), 0)
        acc = tl.zeros([BLOCK_DV], tl.float32)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_valid = offs_n < end
            slots = tl.load(Table + row * stride_table + offs_n, mask=n_valid, other=0)
            k = tl.load(K + slots[:, None] * stride_kt + kv_h * stride_kh + offs_d[None, :],
                        mask=n_valid[:, None] & (offs_d[None, :] < D), other=0.0)  # (N, D)
            s = tl.sum(q[None, :] * k.to(tl.float32), 1) * scale  # (N,)
            if HAS_SOFTCAP:
                s = softcap * (2.0 * tl.sigmoid(2.0 * s / softcap) - 1.0)
            if HAS_ALIBI:
                s += slope * (offs_n - (seq - 1)).to(tl.float32)
            s = tl.where(n_valid, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 0))
            p = tl.exp(s - m_new)
            alpha = tl.exp(m_i - m_new)
            v = tl.load(V + slots[:, None] * stride_vt + kv_h * stride_vh + offs_dv[None, :],
                        mask=n_valid[:, None] & (offs_dv[None, :] < DV), other=0.0)  # (N, DV)
            acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)
            l_i = l_i * alpha + tl.sum(p, 0)
            m_i = m_new
        mid = (b * heads + h) * SPLITS + split
        safe_l = tl.where(l_i == 0.0, 1.0, l_i)
        tl.store(MidO + mid * BLOCK_DV + offs_dv, acc / safe_l)
        tl.store(MidL + mid, tl.where(l_i == 0.0, float("-inf"), m_i + tl.log(safe_l)))

    @triton.jit
    def _decode_grouped_kernel(Q, K, V, MidO, MidL, Table, ReqRows, SeqLens, Alibi,
                               stride_qb, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_table,
                               scale, softcap, window, heads,
                               GROUP: tl.constexpr, BLOCK_H: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
                               BLOCK_D: tl.constexpr, BLOCK_DR: tl.constexpr, BLOCK_DV: tl.constexpr,
                               BLOCK_N: tl.constexpr, SPLITS: tl.constexpr, HAS_WINDOW: tl.constexpr,
                               HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, UPCAST: tl.constexpr):
        b, hblock, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        blocks_per_group = tl.cdiv(GROUP, BLOCK_H)
        kv_h = hblock // blocks_per_group
        in_group = (hblock % blocks_per_group) * BLOCK_H + tl.arange(0, BLOCK_H)
        h_valid = in_group < GROUP
        offs_h = kv_h * GROUP + in_group  # (H,) query heads of this kv head
        row = tl.load(ReqRows + b)
        seq = tl.load(SeqLens + b)
        start, end = _split_range(seq, split, window, SPLITS, HAS_WINDOW)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        q_rows = Q + b * stride_qb + offs_h[:, None] * stride_qh
        q = tl.load(q_rows + offs_d[None, :], mask=h_valid[:, None] & (offs_d[None, :] < D), other=0.0)  # (H, D)
        if BLOCK_DR > 0:  # columns BLOCK_D .. D (MLA's rope part)
            offs_dr = BLOCK_D + tl.arange(0, BLOCK_DR)
            q_r = tl.load(q_rows + offs_dr[None, :], mask=h_valid[:, None] & (offs_dr[None, :] < D), other=0.0)
        if HAS_ALIBI:
            slope = tl.load(Alibi + offs_h, mask=h_valid, other=0.0).to(tl.float32)
        if UPCAST:
            q = q.to(tl.float32)
            if BLOCK_DR > 0:
                q_r = q_r.to(tl.float32)
        m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_H], tl.float32)
        acc = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_valid = offs_n < end
            slots = tl.load(Table + row * stride_table + offs_n, mask=n_valid, other=0)
            k_cols = K + slots[None, :] * stride_kt + kv_h * stride_kh
            k = tl.load(k_cols + offs_d[:, None], mask=n_valid[None, :] & (offs_d[:, None] < D), other=0.0)  # (D, N)
            if UPCAST:
                k = k.to(tl.float32)
            s = tl.dot(q, k)
            if BLOCK_DR > 0:
                k_r = tl.load(k_cols + offs_dr[:, None], mask=n_valid[None, :] & (offs_dr[:, None] < D), other=0.0)
                if UPCAST:
                    k_r = k_r.to(tl.float32)
                s += tl.dot(q_r, k_r)
            s *= scale  # (H, N)
            if HAS_SOFTCAP:
                s = softcap * (2.0 * tl.sigmoid(2.0 * s / softcap) - 1.0)
            if HAS_ALIBI:
                s += slope[:, None] * (offs_n - (seq - 1)).to(tl.float32)[None, :]
            s = tl.where(n_valid[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp(s - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            v = tl.load(V + slots[:, None] * stride_vt + kv_h * stride_vh + offs_dv[None, :],
                        mask=n_valid[:, None] & (offs_dv[None, :] < DV), other=0.0)  # (N, DV)
            p_lo = p.to(v.dtype)
            if UPCAST:
                p_lo, v = p_lo.to(tl.float32), v.to(tl.float32)
            acc = acc * alpha[:, None] + tl.dot(p_lo, v)
            l_i = l_i * alpha + tl.sum(p, 1)
            m_i = m_new
        mid = (b * heads + offs_h) * SPLITS + split  # (H,)
        safe_l = tl.where(l_i == 0.0, 1.0, l_i)
        tl.store(MidO + mid[:, None] * BLOCK_DV + offs_dv[None, :], acc / safe_l[:, None], mask=h_valid[:, None])
        tl.store(MidL + mid, tl.where(l_i == 0.0, float("-inf"), m_i + tl.log(safe_l)), mask=h_valid)

    @triton.jit
    def _decode_merge_kernel(MidO, MidL, Out, Sinks, stride_ob, stride_oh, DV: tl.constexpr,
                             BLOCK_DV: tl.constexpr, SPLITS: tl.constexpr, BLOCK_S: tl.constexpr,
                             HAS_SINKS: tl.constexpr):
        b, h = tl.program_id(0), tl.program_id(1)
        mid = (b * tl.num_programs(1) + h) * SPLITS
        offs_s = tl.arange(0, BLOCK_S)
        offs_dv = tl.arange(0, BLOCK_DV)
        lse = tl.load(MidL + mid + offs_s, mask=offs_s < SPLITS, other=float("-inf"))  # (S,)
        parts = tl.load(MidO + (mid + offs_s)[:, None] * BLOCK_DV + offs_dv[None, :], mask=(offs_s < SPLITS)[:, None],
                        other=0.0)  # (S, DV)
        m = tl.max(lse, 0)
        if HAS_SINKS:
            sink = tl.load(Sinks + h).to(tl.float32)
            m = tl.maximum(m, sink)
        w = tl.exp(lse - m)  # empty splits weigh 0
        denom = tl.sum(w, 0)
        if HAS_SINKS:
            denom += tl.exp(sink - m)
        out = tl.sum(w[:, None] * parts, 0) / denom
        tl.store(Out + b * stride_ob + h * stride_oh + offs_dv, out.to(Out.dtype.element_ty), mask=offs_dv < DV)


def decode_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor,
                     req_rows: torch.Tensor, seq_lens: torch.Tensor, scale: float, window: int | None = None,
                     softcap: float | None = None, sinks: torch.Tensor | None = None,
                     alibi: torch.Tensor | None = None, num_splits: int = 8, grouped: bool | None = None,
                     block_n: int = 32) -> torch.Tensor:
    """As `decode_attention_reference`; req_rows and seq_lens (batch,) int64 on q's device, every
    seq_len >= 1 (not checked: that would sync). grouped=None picks the grouped kernel when
    several query heads share a kv head. The split count is fixed per call (not per request),
    so a captured CUDA graph replays for any lengths."""
    _check_pool_and_table(q, k_pool, v_pool, table)
    batch, heads, d = q.shape
    for name, t in (("req_rows", req_rows), ("seq_lens", seq_lens)):
        check(t.dtype == torch.int64 and t.shape == (batch,) and t.is_contiguous(), f"{name} must be a contiguous (batch,) int64 tensor")
    _check_flags(heads, window, softcap, sinks, alibi)
    check(num_splits >= 1, f"num_splits {num_splits} must be >= 1")
    kv_heads, dv = k_pool.shape[1], v_pool.shape[2]
    group = heads // kv_heads
    grouped = group > 1 if grouped is None else grouped
    block_dv = next_pow2(dv)
    out = torch.empty(batch, heads, dv, dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    mid_o = torch.empty(batch, heads, num_splits, block_dv, dtype=torch.float32, device=q.device)
    mid_l = torch.empty(batch, heads, num_splits, dtype=torch.float32, device=q.device)
    alibi_arg = alibi if alibi is not None else q
    common = (q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1), v_pool.stride(0), v_pool.stride(1),
              table.stride(0), float(scale), float(softcap or 1.0), int(window or 0))
    flags = dict(HAS_WINDOW=window is not None, HAS_SOFTCAP=softcap is not None, HAS_ALIBI=alibi is not None)
    if grouped:
        block_h = max(16, min(64, next_pow2(group)))  # tl.dot wants M >= 16
        block_d = 1 << (d.bit_length() - 1)  # the largest power of two <= d; the rest read apart
        # (tl.dot wants K >= 16, so a rest under 16 is read as 16 columns, masked)
        rest = d - block_d
        grid = (batch, kv_heads * triton.cdiv(group, block_h), num_splits)
        _decode_grouped_kernel[grid](q, k_pool, v_pool, mid_o, mid_l, table, req_rows, seq_lens, alibi_arg, *common,
                                     heads, GROUP=group, BLOCK_H=block_h, D=d, DV=dv, BLOCK_D=block_d,
                                     BLOCK_DR=max(16, next_pow2(rest)) if rest else 0, BLOCK_DV=block_dv, BLOCK_N=block_n,
                                     SPLITS=num_splits, UPCAST=upcast_dots(q.dtype), **flags)
    else:
        _decode_head_kernel[(batch, heads, num_splits)](
            q, k_pool, v_pool, mid_o, mid_l, table, req_rows, seq_lens, alibi_arg, *common, GROUP=group, D=d, DV=dv,
            BLOCK_D=next_pow2(d), BLOCK_DV=block_dv, BLOCK_N=block_n, SPLITS=num_splits, **flags)
    _decode_merge_kernel[(batch, heads)](mid_o, mid_l, out, sinks if sinks is not None else q, out.stride(0),
                                         out.stride(1), DV=dv, BLOCK_DV=block_dv, SPLITS=num_splits,
                                         BLOCK_S=next_pow2(num_splits), HAS_SINKS=sinks is not None)
    return out
