"""What the hardware computes natively, checked once per process."""

from __future__ import annotations

import functools

import torch


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo); empty where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_amx_bf16() -> bool:
    """True when the CPU has the tile unit with bf16 products (AMX), which the C kernels use."""
    return {"amx_bf16", "amx_tile"} <= cpu_flags()


def emulated_bf16(t: torch.Tensor) -> bool:
    """True for a bfloat16 CPU tensor on a CPU without bf16 units, where bf16 GEMMs and
    attention kernels run several times slower than float32 (see layers/linear.py)."""
    return t.dtype == torch.bfloat16 and t.device.type == "cpu" and not cpu_has_native_bf16()
