"""The ISA switch (sgl.kernels.cpu.isa): parsing SGL_CPU_ISA, and every level this CPU allows
run in a subprocess, asserting which kernel each layer function dispatches to there (a path a
level should take and does not fails) and running the fused-decoder tests at that level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sgl.kernels.cpu.isa import LEVELS, Level, hardware_level, isa, parse_level, torch_bf16_native

ROOT = Path(__file__).resolve().parents[2]

# What each level's layer calls must reach: the vector kernels from avx2 up, the portable ones
# (norm, rope, KV store, attention rows) at every level, the tile kernel with AMX only.
EXPECTED = {
    Level.NONE: {"rmsnorm", "rope"},
    Level.AVX2: {"rmsnorm", "rope", "linear", "silu_mul", "add"},
    Level.AVX512_BF16: {"rmsnorm", "rope", "linear", "silu_mul", "add"},
    Level.AMX: {"rmsnorm", "rope", "linear", "silu_mul", "add", "linear_tiles"},
}

PROBE = """
import json, torch
from sgl.kernels.cpu import dispatch, library
from sgl.kernels.cpu.isa import isa
from sgl.kernels.linear import pack_tiles, tiles_available, linear_tiles
from sgl.runtime.layers.activation import gated, residual_add
from sgl.runtime.layers.linear import linear
from sgl.runtime.layers.norm import RMSNorm
from sgl.runtime.layers.rotary import _side_by_side
from sgl.kernels.rope import rope_applies, rope_neox_bf16_
B = torch.bfloat16
x, w = torch.randn(1, 64, dtype=B), torch.randn(96, 64, dtype=B)
linear(x, w)
linear(x[:0], w)  # zero rows: torch, never the kernel
gated(torch.nn.functional.silu, torch.randn(2, 64, dtype=B))
residual_add(torch.randn(2, 64, dtype=B), torch.randn(2, 64, dtype=B))
norm = RMSNorm(64).to(B)
norm(torch.randn(2, 64, dtype=B))
heads, c = torch.randn(2, 3, 64, dtype=B), torch.randn(2, 32, dtype=B)
if rope_applies(heads, c, c, 64):
    rope_neox_bf16_(heads, c, c, 64)
if tiles_available(64, 96):
    linear_tiles(x, pack_tiles(w), 96)
lib = library()
print(json.dumps({"level": isa().level.label, "built": lib.sgl_isa_level(), "dispatch": sorted(dispatch)}))
"""


def test_parse_level_names_the_allowed_values() -> None:
    assert parse_level("avx2", Level.AMX) == Level.AVX2
    assert parse_level(" NONE ", Level.AVX2) == Level.NONE
    with pytest.raises(ValueError, match="none, avx2, avx512_bf16, amx.*this CPU has avx2"):
        parse_level("sse4", Level.AVX2)
    with pytest.raises(ValueError, match="above what this CPU has \\(avx2\\): use one of none, avx2"):
        parse_level("avx512_bf16", Level.AVX2)


def test_hardware_level_from_flags() -> None:
    avx2 = frozenset({"avx2", "fma", "f16c"})
    avx512 = avx2 | {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"}
    assert hardware_level(frozenset()) == Level.NONE
    assert hardware_level(frozenset({"avx2"})) == Level.NONE  # no FMA: not the avx2 level
    assert hardware_level(avx2) == Level.AVX2
    assert hardware_level(avx512) == Level.AVX512_BF16
    assert hardware_level(avx512 | {"amx_tile", "amx_bf16"}) == Level.AMX
    assert len({isa().__class__(level, Level.AMX).compile_flags() for level in Level}) == len(LEVELS)


def test_torch_bf16_is_native_only_with_bf16_dot_products_in_onednn() -> None:
    assert torch_bf16_native(Level.AMX, "") and torch_bf16_native(Level.AVX512_BF16, "avx512_core_bf16")
    assert not torch_bf16_native(Level.AVX2, "")  # an AVX2-only CPU: oneDNN emulates bf16
    assert not torch_bf16_native(Level.AMX, "AVX2") and not torch_bf16_native(Level.AVX512_BF16, "avx512_core")


def _env(level: Level, **extra: str) -> dict[str, str]:
    env = dict(os.environ, SGL_CPU_ISA=level.label, **extra)
    env.pop("SGL_CPU_KERNELS", None)
    return env


# An AVX2-only CPU (here: oneDNN capped at AVX2 too): torch's bf16 GEMM is emulated, ~5x slower
# than the AVX2 kernel, so the kernel takes products of every row count, prefill's included.
AVX2_ONLY = dict(ONEDNN_MAX_CPU_ISA="AVX2")
ROWS_PROBE = """
import json, torch
from sgl.kernels.cpu import dispatch
from sgl.kernels.cpu.isa import isa
from sgl.kernels.linear import linear_reference
from sgl.runtime.layers.linear import linear
torch.manual_seed(0)
x, w = torch.randn(300, 64, dtype=torch.bfloat16), torch.randn(96, 64, dtype=torch.bfloat16)
same = torch.allclose(linear(x, w).float(), linear_reference(x, w).float(), rtol=1e-2, atol=1e-2)
print(json.dumps({"native": isa().torch_bf16, "linear": dispatch["linear"], "same": same}))
"""


@pytest.mark.parametrize("extra", [{}, AVX2_ONLY], ids=["native torch", "avx2-only torch"])
def test_avx2_kernel_takes_long_products_where_torch_emulates_bf16(extra, cpu_kernels) -> None:
    if isa().hardware < Level.AVX2:
        pytest.skip("no AVX2 on this CPU")
    done = subprocess.run([sys.executable, "-c", ROWS_PROBE], env=_env(Level.AVX2, **extra), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    emulated = not extra and isa().hardware == Level.AVX2 or bool(extra)
    assert got == {"native": not emulated, "linear": int(emulated), "same": True}, got


@pytest.mark.parametrize("level", list(Level), ids=LEVELS)
def test_each_level_dispatches_to_its_kernels(level, cpu_kernels) -> None:
    if level > isa().hardware:
        pytest.skip(f"this CPU has {isa().hardware.label}")
    done = subprocess.run([sys.executable, "-c", PROBE], env=_env(level), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["level"] == level.label and got["built"] == int(level), got
    assert set(got["dispatch"]) == EXPECTED[level], (level.label, got["dispatch"])


@pytest.mark.parametrize(("level", "extra"), [(Level.NONE, {}), (Level.AVX2, {}), (Level.AVX2, AVX2_ONLY)],
                         ids=["none", "avx2", "avx2-only torch"])
def test_lower_levels_pass_the_fused_decoder_tests(level, extra, cpu_kernels) -> None:
    """The dispatch-sensitive engine tests at a level below this CPU's (this process runs them
    at its own): at avx2 the stack must run (identity and module-path agreement), also as on an
    AVX2-only CPU, where it takes extends of any size; at none the vector fixture skips them, so
    the engine must still serve through torch."""
    if level >= isa().level and not (extra and isa().torch_bf16):
        pytest.skip(f"this process already runs at {isa().level.label}")
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                           "tests/runtime/test_fused_decoder.py", "tests/runtime/test_llama_parity.py::test_cached_prefix"],
                          env=_env(level, **extra), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    if level == Level.AVX2:  # the as-loaded identity and agreement tests must run there, not skip
        for name in ("test_a_token_gets_the_same_logits_alone_in_a_batch_or_in_an_extend",
                     "test_fused_decoder_agrees_with_the_module_path"):
            assert f"{name}[as loaded] PASSED" in done.stdout, done.stdout[-4000:]
