"""Speed of the Triton kernels (kernels/triton) against their torch references and, for
attention, against torch's scaled_dot_product_attention on the same shapes, on CUDA.

    .venv/bin/python benchmark/bench_triton.py [--dtype bfloat16] [--quick]

Shapes are Llama-3-8B's (32 heads, 8 kv heads, head_dim 128; hidden 4096), DeepSeek's MLA
decode (16 heads over one 576-wide latent, v its first 512), and a Mixtral-shaped MoE layer
(scaled down). Each line prints the kernel's time, the reference's, SDPA's where it applies,
and the largest difference from the reference. Needs a GPU: exits with a message without one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from torch.nn import functional as F


def bench(reps: int, fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Median milliseconds of fn(*args, **kwargs) over reps runs, after a warm-up (CUDA events)."""
    for _ in range(3):
        fn(*args, **kwargs)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args, **kwargs)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def paged(batch: int, seq: int, kv_heads: int, d: int, dv: int, dtype: torch.dtype):
    """A pool with each request's slots in shuffled pages of 16, and its table."""
    slots = batch * seq + 16
    k = torch.randn(slots, kv_heads, d, device="cuda", dtype=dtype)
    v = k[..., :dv] if dv != d else torch.randn(slots, kv_heads, dv, device="cuda", dtype=dtype)
    pages = torch.randperm((slots - 16) // 16, device="cuda")
    order = (pages[:, None] * 16 + 16 + torch.arange(16, device="cuda")[None, :]).flatten()
    table = order[: batch * seq].view(batch, seq).contiguous()
    return k, v, table, torch.arange(batch, device="cuda")


def line(name: str, ours: float, ref: float | None, sdpa: float | None, err: float) -> None:
    parts = [f"{name:<44} triton {ours:8.3f} ms"]
    if ref is not None:
        parts.append(f"reference {ref:9.3f} ms ({ref / ours:6.1f}x)")
    if sdpa is not None:
        parts.append(f"sdpa {sdpa:8.3f} ms ({sdpa / ours:5.2f}x)")
    parts.append(f"max|diff| {err:.2e}")
    print("  ".join(parts), flush=True)


def bench_extend(dtype: torch.dtype, reps: int, quick: bool) -> None:
    from sgl.kernels.triton.extend_attention import extend_attention, extend_attention_reference

    heads, kv_heads, d = 32, 8, 128
    for batch, prefix, new in [(1, 0, 512), (4, 0, 1024), (4, 1024, 256)][: 2 if quick else 3]:
        k, v, table, rows = paged(batch, prefix + new, kv_heads, d, d, dtype)
        q = torch.randn(batch * new, heads, d, device="cuda", dtype=dtype)
        ext = torch.full((batch,), new, device="cuda")
        args = (q, k, v, table, rows, torch.arange(batch, device="cuda") * new, torch.full((batch,), prefix, device="cuda"), ext)
        ours = bench(reps, extend_attention, *args, new, d**-0.5)
        ref = bench(max(3, reps // 10), extend_attention_reference, *args, d**-0.5)
        err = (extend_attention(*args, new, d**-0.5).float() - extend_attention_reference(*args, d**-0.5).float()).abs().max().item()
        # SDPA on keys already dense (b, kv_heads, prefix + new, d): its best case, no gather
        kd = k[table].transpose(1, 2).contiguous()
        vd = v[table].transpose(1, 2).contiguous()
        qd = q.view(batch, new, heads, d).transpose(1, 2).contiguous()
        mask = None if prefix == 0 else torch.ones(new, prefix + new, device="cuda", dtype=torch.bool).tril(prefix)
        sdpa = bench(reps, F.scaled_dot_product_attention, qd, kd, vd, attn_mask=mask, is_causal=mask is None,
                     scale=d**-0.5, enable_gqa=True)
        line(f"extend b={batch} prefix={prefix} new={new} (32/8x128)", ours, ref, sdpa, err)


def bench_decode(dtype: torch.dtype, reps: int, quick: bool) -> None:
    from sgl.kernels.triton.decode_attention import decode_attention, decode_attention_reference

    cases = [((32, 8, 128, 128), 1, 1024), ((32, 8, 128, 128), 16, 1024), ((32, 8, 128, 128), 64, 1024),
             ((32, 8, 128, 128), 64, 4096), ((16, 1, 576, 512), 16, 1024), ((16, 1, 576, 512), 64, 2048)]
    for (heads, kv_heads, d, dv), batch, seq in cases[:3] if quick else cases:
        k, v, table, rows = paged(batch, seq, kv_heads, d, dv, dtype)
        q = torch.randn(batch, heads, d, device="cuda", dtype=dtype)
        lens = torch.full((batch,), seq, device="cuda")
        for grouped in (False, True) if kv_heads > 1 else (True,):
            ours = bench(reps, decode_attention, q, k, v, table, rows, lens, d**-0.5, grouped=grouped)
            err = (decode_attention(q, k, v, table, rows, lens, d**-0.5, grouped=grouped).float()
                   - decode_attention_reference(q, k, v, table, rows, lens, d**-0.5).float()).abs().max().item()
            ref = bench(3, decode_attention_reference, q, k, v, table, rows, lens, d**-0.5) if grouped else None
            kd = k[table].transpose(1, 2)  # (b, kv_heads, seq, d): the gather the torch backend does
            vd = v[table].transpose(1, 2)
            sdpa = bench(reps, F.scaled_dot_product_attention, q[:, :, None], kd, vd, scale=d**-0.5,
                         enable_gqa=True)
            kind = "grouped" if grouped else "per-head"
            line(f"decode {kind} b={batch} seq={seq} ({heads}/{kv_heads}x{d}/{dv})", ours, ref, sdpa, err)


def bench_ops(dtype: torch.dtype, reps: int) -> None:
    from sgl.kernels.triton.moe import fused_moe, moe_reference
    from sgl.kernels.triton.norm import add_rmsnorm, add_rmsnorm_reference
    from sgl.kernels.triton.rope import rope_, rope_reference

    for rows in (64, 4096):
        x, r = torch.randn(rows, 4096, device="cuda", dtype=dtype), torch.randn(rows, 4096, device="cuda", dtype=dtype)
        w = torch.randn(4096, device="cuda", dtype=dtype)
        err = (add_rmsnorm(x, r, w, 1e-5)[0].float() - add_rmsnorm_reference(x, r, w, 1e-5)[0].float()).abs().max().item()
        line(f"add_rmsnorm rows={rows} d=4096", bench(reps, add_rmsnorm, x, r, w, 1e-5),
             bench(reps, add_rmsnorm_reference, x, r, w, 1e-5), None, err)
        q = torch.randn(rows, 32, 128, device="cuda", dtype=dtype)
        pos = torch.randint(0, 8192, (rows,), device="cuda")
        inv = 1.0 / 500000 ** (torch.arange(0, 128, 2, device="cuda").float() / 128)
        freqs = torch.arange(8192, device="cuda").float()[:, None] * inv[None]
        cache = torch.cat([freqs.cos(), freqs.sin()], -1)
        ref_q = rope_reference(q, pos, cache, 128)
        err = (rope_(q.clone(), pos, cache, 128).float() - ref_q.float()).abs().max().item()
        line(f"rope rows={rows} 32x128", bench(reps, rope_, q, pos, cache, 128),
             bench(reps, rope_reference, q, pos, cache, 128), None, err)
    experts, hidden, inter, topk = 8, 2048, 4096, 2
    w1 = torch.randn(experts, 2 * inter, hidden, device="cuda", dtype=dtype) * 0.02
    w2 = torch.randn(experts, hidden, inter, device="cuda", dtype=dtype) * 0.02
    for tokens in (16, 512):
        x = torch.randn(tokens, hidden, device="cuda", dtype=dtype)
        tw, ti = torch.randn(tokens, experts, device="cuda").softmax(-1).topk(topk)
        err = (fused_moe(x, w1, w2, tw, ti).float() - moe_reference(x, w1, w2, tw, ti).float()).abs().max().item()
        line(f"fused_moe tokens={tokens} E=8 top2 2048/4096", bench(reps, fused_moe, x, w1, w2, tw, ti),
             bench(max(3, reps // 10), moe_reference, x, w1, w2, tw, ti), None, err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_triton.py needs a CUDA device (the kernels' CPU runs are the interpreted tests)")
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    print(f"device: {torch.cuda.get_device_name()}  dtype: {args.dtype}")
    bench_extend(dtype, args.reps, args.quick)
    bench_decode(dtype, args.reps, args.quick)
    bench_ops(dtype, args.reps)


if __name__ == "__main__":
    main()
