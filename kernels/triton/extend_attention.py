"""Extend (prefill) attention over the paged KV pool: each request's new tokens attend causally
to its cached prefix and to themselves, every key read through the request-to-token table.

NOTE: the runtime stores the new tokens' keys and values in the pool before attending
(runtime/layers/attention.py), so the kernel reads all of a request's keys, cached and new, the
same way: slots table[row, 0 : prefix + extend]. Query t of request b sits at position
prefix_b + t and sees key j when j <= prefix_b + t (and prefix_b + t - j < window).

    keys of request b:  | cached prefix (prefix_b) | new tokens (extend_b) |
    queries:                                       | q_start_b .. + extend_b (packed rows of q) |

Flags: sliding window, soft-capping (Gemma 2: cap * tanh(s / cap)), sinks (gpt-oss: one logit
per head that joins the softmax's denominator and carries no value), ALiBi (slope_h * (j - i)).
"""

from __future__ import annotations

import torch

from . import check, next_pow2, upcast_dots

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


def extend_attention_reference(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor,
                               req_rows: torch.Tensor, q_start: torch.Tensor, prefix_lens: torch.Tensor,
                               extend_lens: torch.Tensor, scale: float, window: int | None = None,
                               softcap: float | None = None, sinks: torch.Tensor | None = None,
                               alibi: torch.Tensor | None = None) -> torch.Tensor:
    """q (tokens, heads, d) packed request after request -> (tokens, heads, dv); float32 inside."""
    heads, dv = q.shape[1], v_pool.shape[2]
    out = torch.zeros(q.shape[0], heads, dv, dtype=q.dtype, device=q.device)
    for b in range(req_rows.shape[0]):
        row, start = int(req_rows[b]), int(q_start[b])
        prefix, ext = int(prefix_lens[b]), int(extend_lens[b])
        slots = table[row, : prefix + ext]
        group = heads // k_pool.shape[1]
        k = k_pool[slots].float().repeat_interleave(group, dim=1)  # (n, heads, d)
        v = v_pool[slots].float().repeat_interleave(group, dim=1)  # (n, heads, dv)
        qb = q[start : start + ext].float()  # (ext, heads, d)
        s = torch.einsum("thd,nhd->htn", qb, k) * scale  # (heads, ext, n)
        if softcap is not None:
            s = softcap * torch.tanh(s / softcap)
        i = prefix + torch.arange(ext, device=q.device)[:, None]  # query positions (ext, 1)
        j = torch.arange(prefix + ext, device=q.device)[None, :]
        if alibi is not None:
            s = s + alibi.float()[:, None, None] * (j - i)[None].float()
        visible = j <= i
        if window is not None:
            visible &= i - j < window
        s = s.masked_fill(~visible[None], float("-inf"))
        if sinks is not None:  # one more column per head, dropped after the softmax
            s = torch.cat([s, sinks.float()[:, None, None].expand(heads, ext, 1)], dim=-1)
            p = s.softmax(-1)[..., :-1]
        else:
            p = s.softmax(-1)
        out[start : start + ext] = torch.einsum("htn,nhd->thd", p, v).to(q.dtype)
    return out


if triton is not None:

    @triton.jit
    def _extend_kernel(Q, K, V, Out, Table, ReqRows, QStart, PrefixLens, ExtendLens, Sinks, Alibi,
                       stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
                       stride_table, scale, softcap, window,
                       GROUP: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, BLOCK_D: tl.constexpr,
                       BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_SINKS: tl.constexpr,
                       HAS_ALIBI: tl.constexpr, UPCAST: tl.constexpr):
        b, h, m_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        ext = tl.load(ExtendLens + b)
        if m_block * BLOCK_M < ext:
            prefix = tl.load(PrefixLens + b)
            q_start = tl.load(QStart + b)
            row = tl.load(ReqRows + b)
            kv_h = h // GROUP
            offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
            m_valid = offs_m < ext
            offs_d = tl.arange(0, BLOCK_D)
            offs_dv = tl.arange(0, BLOCK_DV)
            q = tl.load(Q + (q_start + offs_m)[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                        mask=m_valid[:, None] & (offs_d[None, :] < D), other=0.0)  # (M, D)
            q_pos = prefix + offs_m  # (M,)
            m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
            l_i = tl.zeros([BLOCK_M], tl.float32)
            acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
            # causal: no key past this block's last query; window: none before its first query's reach
            end = tl.minimum(prefix + ext, prefix + (m_block + 1) * BLOCK_M)
            start = 0
            if HAS_WINDOW:
                start = tl.maximum(prefix + m_block * BLOCK_M - window + 1, 0) // BLOCK_N * BLOCK_N
            if HAS_ALIBI:
                slope = tl.load(Alibi + h).to(tl.float32)
            for n0 in range(start, end, BLOCK_N):
                offs_n = n0 + tl.arange(0, BLOCK_N)
                n_valid = offs_n < end
                slots = tl.load(Table + row * stride_table + offs_n, mask=n_valid, other=0)  # (N,) int64
                k = tl.load(K + slots[None, :] * stride_kt + kv_h * stride_kh + offs_d[:, None],
                            mask=n_valid[None, :] & (offs_d[:, None] < D), other=0.0)  # (D, N)
                if UPCAST:
                    q, k = q.to(tl.float32), k.to(tl.float32)
                s = tl.dot(q, k) * scale  # (M, N) float32
                if HAS_SOFTCAP:  # tanh(x) = 2 sigmoid(2x) - 1
                    s = softcap * (2.0 * tl.sigmoid(2.0 * s / softcap) - 1.0)
                if HAS_ALIBI:
                    s += slope * (offs_n[None, :] - q_pos[:, None]).to(tl.float32)
                visible = (offs_n[None, :] <= q_pos[:, None]) & n_valid[None, :]
                if HAS_WINDOW:
                    visible &= (q_pos[:, None] - offs_n[None, :]) < window
                s = tl.where(visible, s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that saw no key yet
                p = tl.exp(s - m_safe[:, None])
                alpha = tl.exp(m_i - m_safe)
                v = tl.load(V + slots[:, None] * stride_vt + kv_h * stride_vh + offs_dv[None, :],
                            mask=n_valid[:, None] & (offs_dv[None, :] < DV), other=0.0)  # (N, DV)
                p_lo = p.to(v.dtype)
                if UPCAST:
                    p_lo, v = p_lo.to(tl.float32), v.to(tl.float32)
                acc = acc * alpha[:, None] + tl.dot(p_lo, v)
                l_i = l_i * alpha + tl.sum(p, 1)
                m_i = m_new
            if HAS_SINKS:
                sink = tl.load(Sinks + h).to(tl.float32)
                m_fin = tl.maximum(m_i, sink)
                alpha = tl.exp(m_i - m_fin)
                acc = acc * alpha[:, None]
                l_i = l_i * alpha + tl.exp(sink - m_fin)
            out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # rows past ext: never stored
            tl.store(Out + (q_start + offs_m)[:, None] * stride_ot + h * stride_oh + offs_dv[None, :],
                     out.to(Out.dtype.element_ty), mask=m_valid[:, None] & (offs_dv[None, :] < DV))


def _check_pool_and_table(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor) -> None:
    check(q.dtype in (torch.float16, torch.bfloat16, torch.float32), f"q.dtype is {q.dtype}: use float16, bfloat16 or float32")
    check(k_pool.dtype == v_pool.dtype == q.dtype, f"k_pool/v_pool dtype {k_pool.dtype}/{v_pool.dtype} must be q's {q.dtype}")
    check(q.dim() == 3 and k_pool.dim() == 3 and v_pool.dim() == 3,
          "q (tokens, heads, d), k_pool (slots, kv_heads, d), v_pool (slots, kv_heads, dv) must be 3-d")
    check(q.shape[2] == k_pool.shape[2], f"q head_dim {q.shape[2]} != k_pool head_dim {k_pool.shape[2]}")
    check(k_pool.shape[:2] == v_pool.shape[:2], f"k_pool {tuple(k_pool.shape)} and v_pool {tuple(v_pool.shape)} must share (slots, kv_heads)")
    check(q.shape[1] % k_pool.shape[1] == 0, f"heads {q.shape[1]} must be a multiple of kv_heads {k_pool.shape[1]}")
    check(q.stride(2) == 1 and k_pool.stride(2) == 1 and v_pool.stride(2) == 1,
          "q, k_pool and v_pool need their last dim contiguous (stride 1)")
    check(table.dtype == torch.int64 and table.dim() == 2 and table.stride(1) == 1,
          "table must be the (rows, max_context) int64 request-to-token table, rows contiguous")


def _check_flags(heads: int, window: int | None, softcap: float | None, sinks: torch.Tensor | None,
                 alibi: torch.Tensor | None) -> None:
    check(window is None or window > 0, f"window {window} must be a positive number of tokens or None")
    check(softcap is None or softcap > 0, f"softcap {softcap} must be positive or None")
    for name, t in (("sinks", sinks), ("alibi", alibi)):
        check(t is None or (t.shape == (heads,) and t.is_contiguous()), f"{name} must be a contiguous (heads,) = ({heads},) tensor")


def extend_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor,
                     req_rows: torch.Tensor, q_start: torch.Tensor, prefix_lens: torch.Tensor,
                     extend_lens: torch.Tensor, max_extend: int, scale: float, window: int | None = None,
                     softcap: float | None = None, sinks: torch.Tensor | None = None,
                     alibi: torch.Tensor | None = None, block_m: int = 32, block_n: int = 32) -> torch.Tensor:
    """As `extend_attention_reference`. The per-request tensors (batch,) are int64 on q's device
    (built once per step); max_extend >= every extend_len (sizes the grid)."""
    _check_pool_and_table(q, k_pool, v_pool, table)
    batch = req_rows.shape[0]
    for name, t in (("req_rows", req_rows), ("q_start", q_start), ("prefix_lens", prefix_lens), ("extend_lens", extend_lens)):
        check(t.dtype == torch.int64 and t.shape == (batch,) and t.is_contiguous(), f"{name} must be a contiguous (batch,) int64 tensor")
    _check_flags(q.shape[1], window, softcap, sinks, alibi)
    tokens, heads, d = q.shape
    dv = v_pool.shape[2]
    out = torch.empty(tokens, heads, dv, dtype=q.dtype, device=q.device)
    if tokens == 0 or batch == 0:
        return out
    grid = (batch, heads, triton.cdiv(max_extend, block_m))
    _extend_kernel[grid](
        q, k_pool, v_pool, out, table, req_rows, q_start, prefix_lens, extend_lens,
        sinks if sinks is not None else q, alibi if alibi is not None else q,
        q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1), v_pool.stride(0), v_pool.stride(1),
        out.stride(0), out.stride(1), table.stride(0), float(scale), float(softcap or 1.0), int(window or 0),
        GROUP=heads // k_pool.shape[1], D=d, DV=dv, BLOCK_D=next_pow2(d), BLOCK_DV=next_pow2(dv),
        BLOCK_M=block_m, BLOCK_N=block_n, HAS_WINDOW=window is not None, HAS_SOFTCAP=softcap is not None,
        HAS_SINKS=sinks is not None, HAS_ALIBI=alibi is not None, UPCAST=upcast_dots(q.dtype))
    return out
