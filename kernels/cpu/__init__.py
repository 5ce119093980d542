"""C kernels for the CPU, built on first use with the system's C compiler and called through
ctypes (Triton has no CPU backend). Each has a torch reference beside its wrapper in
`sgl.kernels`; without a compiler, or with SGL_CPU_KERNELS=0, callers use the reference.

The library is compiled for the process's ISA level (`isa()`: -march=native with AMX, native
minus AMX, x86-64-v3 for AVX2, baseline x86-64 for none) into $SGL_CACHE_DIR/kernels (default
~/.cache/sgl/kernels), keyed by the sources, the compiler, the CPU's flags and the level, so a
rebuild happens only when one of them changes (~1 s).

Convention: each wrapper in sgl.kernels has an `*_applies(...)` predicate (dtype, shape, level)
that its caller asks, and the kernel asserts it. `dispatch` counts the kernel calls made, by
name, so tests can check which path a level takes.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch  # NOTE: imported first, so the library's libgomp.so.1 resolves to torch's copy

from .isa import Isa, Level, cpu_flags, isa

logger = logging.getLogger("sgl.kernels")
SOURCES = ("linear_bf16.c", "linear_tiles_bf16.c", "norm_bf16.c", "activation_bf16.c", "rope_bf16.c",
           "attention_bf16.c", "decoder_bf16.c", "prefill_attention_bf16.c",
           "linear_quant.c")
HEADERS = ("bf16.h", "kernels.h", "simd.h")
FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC", "-std=c11")  # + the level's (isa.compile_flags)

P, I64, F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
SIGNATURES = {  # function -> (argtypes, restype)
    "sgl_has_avx512_bf16": ([], ctypes.c_int),
    "sgl_isa_level": ([], ctypes.c_int),
    "sgl_linear_bf16": ([P, P, P, P, I64, I64, I64], None),
    "sgl_amx_init": ([], ctypes.c_int),
    "sgl_linear_rows_bf16": ([P, P, P, P, I64, I64, I64, P], None),
    "sgl_linear_tiles_bf16": ([P, P, P, P, P, I64, I64, I64, I64], None),
    "sgl_rmsnorm_bf16": ([P, I64, P, P, I64, I64, F32], None),
    "sgl_rmsnorm_offset_bf16": ([P, I64, P, P, I64, I64, F32, F32], None),
    "sgl_gelu_tanh_mul_bf16": ([P, P, I64, I64], None),
    "sgl_silu_mul_bf16": ([P, P, I64, I64], None),
    "sgl_add_bf16": ([P, P, P, I64], None),
    "sgl_rope_neox_bf16": ([P, I64, I64, I64, I64, I64, P, P], None),
    "sgl_attention_rows_bf16": ([P, I64, P, P, P, I64, P, P, P, I64, I64, I64, I64, I64, I64, F32, I64], None),
    "sgl_kv_store_bf16": ([P, P, P, P, I64, P, I64, I64, I64], None),
    "sgl_prefill_attention_bf16": ([P, I64, P, P, P, I64, I64, I64, I64, I64, F32, P], ctypes.c_int),
    "sgl_quantize_rows_q8": ([P, I64, I64, P, P, P, P], None),
    "sgl_linear_quant_bf16": ([P, P, P, P, I64, I64, I64], None),
    "sgl_linear_quant_f32": ([P, P, P, P, I64, I64, I64], None),
    "sgl_dequantize_bf16": ([P, P, I64, I64, I64], None),
    "sgl_quant_level": ([], ctypes.c_int),
    "sgl_llama_layers_bf16": ([P, I64, P, I64, I64, I64, I64, I64, I64, F32, F32, I64, P, P, P, P, P, P, I64, P, P,
                               I64, P, I64, P, P, P], None),
}


def _cache_dir() -> Path:
    root = os.environ.get("SGL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sgl")
    return Path(root) / "kernels"



def _build(compiler: str, level: Isa) -> Path:
    here = Path(__file__).parent
    sources = [here / name for name in SOURCES]
    texts = [(here / name).read_text() for name in (*SOURCES, *HEADERS)]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    flags = (*FLAGS, *level.compile_flags())
    key = hashlib.sha256("\0".join([*texts, version, " ".join(sorted(cpu_flags())), level.level.label, *flags]).encode())
    target = _cache_dir() / f"sgl_cpu_{level.level.label}_{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # build aside, then rename: atomic
        out = Path(tmp) / target.name
        done = subprocess.run([compiler, *flags, f"-I{here}", *map(str, sources), "-lm", "-o", str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed:\n{done.stderr}")
        os.replace(out, target)
    return target


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built (reason logged once)."""
    if os.environ.get("SGL_CPU_KERNELS", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        logger.warning("no C compiler found: CPU kernels fall back to torch")
        return None
    level = isa()
    try:
        lib = ctypes.CDLL(str(_build(compiler, level)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        logger.warning("CPU kernels unavailable, falling back to torch: %s", e)
        return None
    for name, (argtypes, restype) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    built = Level(lib.sgl_isa_level())
    # NOTE: AMX needs the kernel's permission at run time too (tile_path), so a build with the
    # tile paths compiled in counts as amx here whatever sgl_amx_init later says
    assert built == level.level, f"the CPU kernels were built for {built.label}, not {level.level.label}"
    return lib


def simd_path() -> bool:
    """Whether the library has vector paths for the streaming kernels (linear, silu * up, add,
    the fused decoder): AVX2 + FMA or above."""
    return library() is not None and isa().level >= Level.AVX2


@functools.cache
def vector_path() -> bool:
    """Whether the library was built with its AVX-512 BF16 paths (else AVX2 or portable C)."""
    lib = library()
    return lib is not None and bool(lib.sgl_has_avx512_bf16())


@functools.cache
def tile_path() -> bool:
    """Whether this process may use the tile unit (AMX) from the library."""
    lib = library()
    return vector_path() and lib.sgl_amx_init() == 1


def bf16_library(*tensors: torch.Tensor, level: Level = Level.NONE) -> ctypes.CDLL | None:
    """The library, where every tensor is bf16 on the CPU and the process's level is at least
    `level`; else None. The one gate the wrappers' `*_applies` predicates share."""
    if any(t.dtype != torch.bfloat16 or t.device.type != "cpu" for t in tensors):
        return None
    if isa().level < level:
        return None
    return library()


dispatch: collections.Counter[str] = collections.Counter()  # kernel name -> calls in this process
