"""What the hardware computes natively, checked once per process. The ISA level
(sgl.kernels.cpu.isa: SGL_CPU_ISA lowers it) decides here too, so a lowered process takes the
torch paths a CPU of that level would."""

from __future__ import annotations

import torch
from sgl.kernels.cpu.isa import Level, cpu_flags, isa  # noqa: F401 (cpu_flags: re-exported)


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX) at this process's
    level: oneDNN's bf16 GEMM is emulated, and slow, below it."""
    return isa().level >= Level.AVX512_BF16


def cpu_has_amx_bf16() -> bool:
    """True when the CPU has the tile unit with bf16 products (AMX), which the C kernels use,
    and the process's level keeps it."""
    return isa().level >= Level.AMX


def emulated_bf16(t: torch.Tensor) -> bool:
    """True for a bfloat16 CPU tensor on a CPU without bf16 units, where bf16 GEMMs and
    attention kernels run several times slower than float32 (see layers/linear.py)."""
    return t.dtype == torch.bfloat16 and t.device.type == "cpu" and not cpu_has_native_bf16()
