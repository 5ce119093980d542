"""The machine's limits, to say how far a figure is from them: memory read bandwidth, the matmul
peak of torch's float32 and bf16 GEMMs and of our bf16 kernel, and what those make of decoding
the default model (every weight byte read once per step).

    .venv/bin/python benchmark/machine_limits.py [--gib 1] [--repeats 5]

Under SGL_CPU_ISA=avx2 our kernel is the AVX2 one (cap torch too with ONEDNN_MAX_CPU_ISA=AVX2
to see what an AVX2-only CPU's oneDNN gives).
"""

from __future__ import annotations

import argparse
import time

import torch


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def read_bandwidth(gib: float, repeats: int) -> float:
    """GB/s of a sum over a float32 buffer far larger than the caches (each byte read once)."""
    data = torch.ones(int(gib * (1 << 30)) // 4)
    return data.numel() * 4 / best_time(lambda: data.sum(), repeats) / 1e9


def gemm_rate(dtype: torch.dtype, m: int, n: int, k: int, repeats: int, fn=None) -> float:
    """GMAC/s of an (m, k) x (k, n) product, weights (n, k) as a linear holds them."""
    x, w = torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype)
    fn = fn or torch.nn.functional.linear
    return m * n * k / best_time(lambda: fn(x, w), repeats) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from sgl.kernels.cpu import isa
    from sgl.kernels.linear import linear_applies, linear_bf16

    print(f"threads: {torch.get_num_threads()}, kernels: {isa().level.label} (hardware {isa().hardware.label}, "
          f"torch bf16 native: {isa().torch_bf16})")
    bandwidth = read_bandwidth(args.gib, args.repeats)
    print(f"memory read bandwidth: {bandwidth:.1f} GB/s")
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        print(f"torch {name} GEMM 1024 x 3072 x 576: {gemm_rate(dtype, 1024, 3072, 576, args.repeats):.1f} GMAC/s")
    probe = torch.zeros(16, 576, dtype=torch.bfloat16), torch.zeros(3072, 576, dtype=torch.bfloat16)
    if linear_applies(*probe, capped=False):
        for m in (1, 16, 256):
            rate = gemm_rate(torch.bfloat16, m, 3072, 576, args.repeats, fn=linear_bf16)
            print(f"sgl bf16 kernel {m} x 3072 x 576: {rate:.1f} GMAC/s")
    weights = 134.5e6 * 2  # SmolLM2-135M in bf16 (the LM head tied to the embedding, read once)
    print(f"batch-1 decode cap of the default model in bf16: {bandwidth * 1e9 / weights:.0f} tokens/s "
          f"({weights / 1e6:.0f} MB of weights a step)")


if __name__ == "__main__":
    main()
