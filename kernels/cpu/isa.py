"""The CPU's vector abilities, detected once per process into one frozen object.

Levels, each a superset of the one before: none (baseline x86-64) < avx2 (AVX2, FMA, F16C) <
avx512_bf16 (AVX-512 with BF16 dot products) < amx (the tile unit with bf16 products).
`SGL_CPU_ISA=<level>` lowers the level for a process (never above what the hardware has), so
one machine can run every lower kernel path; the C library is then compiled for that level
(see `compile_flags`), so the lower code really runs. `SGL_CPU_KERNELS=0` is separate: it
switches the C kernels off entirely (torch only).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os


class Level(enum.IntEnum):
    NONE = 0
    AVX2 = 1
    AVX512_BF16 = 2
    AMX = 3

    @property
    def label(self) -> str:
        return self.name.lower()


LEVELS = tuple(level.label for level in Level)  # ("none", "avx2", "avx512_bf16", "amx")

# C compiler flags per level: each builds only that level's intrinsics paths (#if __AVX2__,
# __AVX512BF16__, __AMX_TILE__ in kernels/cpu/*.c), tuned for this machine.
_FLAGS = {
    Level.AMX: ("-march=native",),
    Level.AVX512_BF16: ("-march=native", "-mno-amx-tile", "-mno-amx-bf16", "-mno-amx-int8"),
    Level.AVX2: ("-march=x86-64-v3", "-mtune=native"),
    Level.NONE: ("-march=x86-64", "-mtune=native"),
}


@dataclasses.dataclass(frozen=True)
class Isa:
    """level: what the kernels use in this process; hardware: what the CPU has (>= level);
    torch_bf16: whether torch's own bf16 GEMM (oneDNN) runs on bf16 dot-product instructions
    here, rather than emulating them at a tenth of the speed (AVX2-only CPUs, or oneDNN capped
    by ONEDNN_MAX_CPU_ISA). Levels compare as integers: `isa().level >= Level.AVX2`."""

    level: Level
    hardware: Level
    torch_bf16: bool = True

    def compile_flags(self) -> tuple[str, ...]:
        return _FLAGS[self.level]


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo); empty where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def hardware_level(flags: frozenset[str]) -> Level:
    """The highest level these /proc/cpuinfo flags support."""
    avx2 = {"avx2", "fma", "f16c"} <= flags
    avx512 = avx2 and {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"} <= flags
    if avx512 and {"amx_tile", "amx_bf16"} <= flags:
        return Level.AMX
    if avx512:
        return Level.AVX512_BF16
    return Level.AVX2 if avx2 else Level.NONE


def parse_level(value: str, hardware: Level) -> Level:
    """SGL_CPU_ISA's value -> a level no higher than `hardware`; a clear error otherwise."""
    name = value.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"SGL_CPU_ISA={value!r} is not a level: use one of {', '.join(LEVELS)} "
                         f"(this CPU has {hardware.label})")
    level = Level[name.upper()]
    if level > hardware:
        allowed = ", ".join(LEVELS[: hardware + 1])
        raise ValueError(f"SGL_CPU_ISA={value!r} is above what this CPU has ({hardware.label}): "
                         f"use one of {allowed}")
    return level


# ONEDNN_MAX_CPU_ISA values below oneDNN's first with bf16 dot products (AVX512_CORE_BF16)
_ONEDNN_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def torch_bf16_native(hardware: Level, onednn_max_isa: str) -> bool:
    """Whether oneDNN (torch's CPU GEMM) multiplies bf16 natively on this hardware, given the
    ONEDNN_MAX_CPU_ISA it reads ("" when unset)."""
    return hardware >= Level.AVX512_BF16 and onednn_max_isa.strip().upper() not in _ONEDNN_WITHOUT_BF16


@functools.cache
def isa() -> Isa:
    """The process's level: the hardware's, lowered by SGL_CPU_ISA where set."""
    hardware = hardware_level(cpu_flags())
    value = os.environ.get("SGL_CPU_ISA", "")
    level = parse_level(value, hardware) if value else hardware
    return Isa(level, hardware, torch_bf16_native(hardware, os.environ.get("ONEDNN_MAX_CPU_ISA", "")))
