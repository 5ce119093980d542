"""What the hardware computes natively, checked once per process."""

from __future__ import annotations

import functools

import torch


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def emulated_bf16(t: torch.Tensor) -> bool:
    """True for a bfloat16 CPU tensor on a CPU without bf16 units, where bf16 GEMMs and
    attention kernels run several times slower than float32 (see layers/linear.py)."""
    return t.dtype == torch.bfloat16 and t.device.type == "cpu" and not cpu_has_native_bf16()
