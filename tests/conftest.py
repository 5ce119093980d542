"""Shared fixtures: tiny random checkpoints saved to temp folders, and the default model."""

from __future__ import annotations

import pytest
from sgl.runtime.loader import default_model_path
from sgl.runtime.loader.gguf_file import converted_folder


@pytest.fixture(scope="session")
def default_tokenizer_folder() -> str:
    """config.json + tokenizer files of the default model (converted from its GGUF once)."""
    return converted_folder(default_model_path())


# ---- the CPU kernels: a test skips only where the CPU lacks the feature it tests, or where the
# kernels are switched off (SGL_CPU_KERNELS=0). A missing compiler skips only outside `make
# test` (which installs one and sets SGL_REQUIRE_CPU_KERNELS=1); a kernel that did not build, or
# built without the path the CPU has, fails the test ----------------------------------------

def _require_kernels(level: str = "none") -> None:
    """level: the lowest ISA level (sgl.kernels.cpu.isa) the tested paths need. A process whose
    level is lower (the CPU's, or SGL_CPU_ISA's) skips; at that level or above the library
    must have built for exactly the process's level (library() asserts it)."""
    import os
    import shutil

    from sgl.kernels.cpu import library, simd_path, tile_path, vector_path
    from sgl.kernels.cpu.isa import Level, isa

    if os.environ.get("SGL_CPU_KERNELS", "1") == "0":
        pytest.skip("SGL_CPU_KERNELS=0: the CPU kernels are switched off")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        if os.environ.get("SGL_REQUIRE_CPU_KERNELS") == "1":
            pytest.fail("no C compiler: install gcc (make does with apt), or set SGL_REQUIRE_CPU_KERNELS=0 "
                        "to test the torch fallback alone")
        pytest.skip("no C compiler: the CPU kernels cannot be built")
    assert library() is not None, "a C compiler is here but the CPU kernels did not build (see the log)"
    need, have = Level[level.upper()], isa()
    if have.level < need:
        pytest.skip(f"the ISA level here is {have.level.label} (CPU: {have.hardware.label}); this needs {level}")
    if need >= Level.AVX2:
        assert simd_path(), f"level {have.level.label} but the library has no vector paths"
    if have.level >= Level.AVX512_BF16:
        assert vector_path(), f"level {have.level.label} but the library was built without AVX-512 BF16"
    if need >= Level.AMX:
        assert tile_path(), "the CPU has AMX but the library cannot use it"


@pytest.fixture(scope="session")
def cpu_kernels() -> None:
    """The portable C kernels (norm, rope, KV store, attention rows)."""
    _require_kernels()


@pytest.fixture(scope="session")
def vector_kernels() -> None:
    """The vector paths, AVX2 or AVX-512 BF16 (linear, silu*up, add, the fused decoder)."""
    _require_kernels("avx2")


@pytest.fixture(scope="session")
def tile_kernels() -> None:
    """The AMX paths (packed and 32-row linear, prefill attention, rowwise bf16 decode)."""
    _require_kernels("amx")
