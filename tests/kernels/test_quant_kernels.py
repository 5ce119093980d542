"""The quantized linear (kernels/cpu/linear_quant.c via sgl.kernels.quant) against its torch
references, for both weight layouts (q4, q8 with scales per 32 or per 16), with and without mins
and bias, across block boundaries, weight-row groups cut short (N % 16) and row tiles (M % 4);
and at each lower CPU level in a subprocess (SGL_CPU_ISA=avx2 / none)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sgl.kernels import quant
from sgl.kernels.cpu import library
from sgl.kernels.cpu.isa import Level, isa

ROOT = Path(__file__).resolve().parents[2]
SHAPES = [(1, 1, 32), (3, 5, 96), (5, 19, 128), (8, 4, 160), (2, 13, 576), (1, 48, 64), (9, 53, 96)]  # (M, N, K)


def _weight(kind: str, n: int, k: int, mins: bool, seed: int) -> quant.QuantWeight:
    """kind: "q4", "q8" (a scale per 16: Q6_K's), "q8/32" (one per 32: Q8_0's), "q5/32" (5-bit
    integers in q8 bytes, -16..15 as Q5_0's: AVX2 takes them without the sign trick) or "q5u/32"
    (0..31, as Q5_1's with their mins); "+f16": the scales and mins float16 values (as
    Q4_0/Q4_1/Q8_0 files store them), held as float16."""
    kind, f16 = kind.removesuffix("+f16"), kind.endswith("+f16")
    g = torch.Generator().manual_seed(seed)
    if kind in ("q8/32", "q5/32", "q5u/32"):
        low, high = {"q8/32": (-128, 128), "q5/32": (-16, 16), "q5u/32": (0, 32)}[kind]
        q = torch.randint(low, high, (n, k), generator=g)
        d = (torch.rand(n, k // 32, generator=g) * 0.002 + 0.0001).repeat_interleave(2, 1)
        m = (torch.randn(n, k // 32, generator=g) * 0.05).repeat_interleave(2, 1) if mins else None
    elif kind == "q4":  # per-32 scales and mins, repeated per 16 as `pack` takes them
        q = torch.randint(0, 16, (n, k), generator=g)
        d = (torch.rand(n, k // 32, generator=g) * 0.02 + 0.001).repeat_interleave(2, 1)
        m = (torch.randn(n, k // 32, generator=g) * 0.05).repeat_interleave(2, 1) if mins else None
    else:
        q = torch.randint(-128, 128, (n, k), generator=g)
        d = torch.rand(n, k // 16, generator=g) * 0.002 + 0.0001
        m = torch.randn(n, k // 16, generator=g) * 0.05 if mins else None
    if f16:
        d, m = d.half().float(), None if m is None else m.half().float()
    w = quant.pack(q, d, m, source=kind)
    assert (w.kind, w.block) == {"q4": ("q4", 32), "q8": ("q8", 16)}.get(kind, ("q8", 32))
    assert w.q_range == (int(q.min()), int(q.max()))
    assert w.d.dtype == (torch.float16 if f16 else torch.float32)
    assert w.shape == (n, k)
    return w


@pytest.fixture(scope="module")
def quant_kernels() -> None:
    if library() is None:
        if os.environ.get("SGL_REQUIRE_CPU_KERNELS", "1") == "0":
            pytest.skip("CPU kernels unavailable")
        pytest.fail("the CPU kernels did not build")


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Within one bf16 rounding of the float32 result, plus float32 summation-order noise."""
    err = (got.float() - want.float()).abs()
    bound = want.float().abs() * 2.0 ** -8 + 1e-4 * want.float().abs().max().clamp(min=1.0)
    assert bool((err <= bound).all()), f"max err {float(err.max())} at {int(err.argmax())}"


@pytest.mark.parametrize("kind", ["q4", "q8", "q8/32", "q4+f16", "q8/32+f16", "q5/32", "q5u/32+f16"])
@pytest.mark.parametrize("mins", [False, True], ids=["no mins", "mins"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_linear_quant_matches_its_references(kind, mins, shape, quant_kernels) -> None:
    m, n, k = shape
    w = _weight(kind, n, k, mins, seed=m * 1000 + n + k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(k)).to(torch.bfloat16)
    bias = torch.randn(n).to(torch.bfloat16)
    got = quant.linear_quant(x, w, bias)
    # the kernel's own arithmetic (x through int8 blocks): up to summation order
    exact = (lambda xq: xq @ quant.dequantize_reference(w).t() + bias.float())(_quantized(x))
    _close(got, exact)
    # plain dequantize-then-multiply in float32: the activation rounding (1/254 per element) and
    # the output's bf16 rounding only (relative to |x| . |w| + |bias|: a single output of K = 32
    # may cancel to near zero, and small weights leave the bias to set the output's rounding)
    wf = quant.dequantize_reference(w)
    plain = x.float() @ wf.t() + bias.float()
    rel = (got.float() - plain).norm() / (x.float().abs() @ wf.abs().t() + bias.float().abs()).norm()
    assert float(rel) < 0.01, float(rel)
    assert quant.linear_quant_reference(x, w, bias).dtype == torch.bfloat16


@pytest.mark.parametrize("kind", ["q4", "q8", "q8/32+f16", "q5/32"])
def test_float32_output_is_the_sums_before_rounding(kind, quant_kernels) -> None:
    """out_dtype float32 (an LM head's logits): the same sums, unrounded. Rounded to bf16 they are
    the bf16 product bit for bit; unrounded, closer to the kernel's exact arithmetic."""
    w = _weight(kind, 53, 160, True, seed=7)
    x = torch.randn(9, 160, generator=torch.Generator().manual_seed(9)).to(torch.bfloat16)
    bias = torch.randn(53).to(torch.bfloat16)
    wide = quant.linear_quant(x, w, bias, out_dtype=torch.float32)
    assert wide.dtype == torch.float32 and wide.shape == (9, 53)
    assert torch.equal(wide.bfloat16(), quant.linear_quant(x, w, bias))
    exact = _quantized(x) @ quant.dequantize_reference(w).t() + bias.float()
    err = (wide - exact).abs()
    assert bool((err <= exact.abs() * 2.0 ** -16 + 1e-5 * exact.abs().max()).all()), float(err.max())
    assert not torch.equal(wide, wide.bfloat16().float())  # not rounded


def _quantized(x: torch.Tensor) -> torch.Tensor:
    q, d = quant.quantize_rows_reference(x)
    return (q.float().reshape(*d.shape, 32) * d.unsqueeze(-1)).reshape(x.shape)


@pytest.mark.parametrize("kind", ["q4", "q8", "q8/32", "q4+f16", "q5/32"])
def test_a_row_does_not_depend_on_the_others(kind, quant_kernels) -> None:
    """10 rows (past 8, AVX-512 takes two weight groups a pass; AVX2 takes q4 3 rows a pass and
    q8 4, with rows left over) against each row alone; 40 weight rows: a pair of groups and one
    group alone."""
    w = _weight(kind, 40, 160, True, seed=3)
    x = torch.randn(10, 160, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    batch = quant.linear_quant(x, w)
    for i in range(x.shape[0]):
        assert torch.equal(quant.linear_quant(x[i:i + 1], w), batch[i:i + 1]), i


def test_quantize_rows_matches_the_reference(quant_kernels) -> None:
    import ctypes

    x = torch.randn(3, 96, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    x[1, 32:64] = 0  # an all-zero block: scale 0, integers 0
    qx, dx = torch.empty(3, 96, dtype=torch.int8), torch.empty(3, 3)
    xs16, xs32 = torch.empty(3, 6), torch.empty(3, 3)
    library().sgl_quantize_rows_q8(x.data_ptr(), 3, 96, qx.data_ptr(), dx.data_ptr(), xs16.data_ptr(), xs32.data_ptr())
    q, d = quant.quantize_rows_reference(x)
    assert torch.equal(qx.to(torch.int32), q) and torch.equal(dx, d)
    assert torch.allclose(xs32, (q.reshape(3, 3, 32).sum(-1).float() * d))
    assert ctypes.sizeof(quant.QWeightStruct) == 64  # sgl_qweight's size in C (kernels.h)


@pytest.mark.parametrize("kind", ["q4", "q8", "q8/32", "q4+f16", "q8/32+f16", "q5/32"])
def test_dequantize_and_layout_round_trip(kind, quant_kernels) -> None:
    w = _weight(kind, 21, 96, True, seed=9)
    assert torch.equal(quant.dequantize_bf16(w), quant.dequantize_reference(w).to(torch.bfloat16))
    q, d, m = quant.unpack(w)
    again = quant.pack(q, d, m)
    assert (again.kind, again.block, again.d.dtype) == (w.kind, w.block, w.d.dtype) and torch.equal(again.qs, w.qs)
    rows = torch.tensor([20, 0, 17, 3])  # an embedding lookup: across groups, in any order
    assert torch.equal(quant.dequantize_rows(w, rows), quant.dequantize_reference(w)[rows])
    # the layout itself: row 17's column 21 is lane 1 of group 1, byte t=1 of run v=1
    block, col = 0, 21
    if w.kind == "q4":  # column 16 + 4v + t of block 0: the high nibble
        assert int(w.qs[1, block, 1, 1, 1]) >> 4 == int(q[17, col])
    else:  # q8: the second 16 columns, v=1, t=1, stored + 128
        assert int(w.qs[1, 1, 1, 1, 1]) - 128 == int(q[17, col])
    other = _weight("q8" if w.kind == "q4" else "q4", 3, 96, False, seed=2)
    both = quant.concat([w, other])
    assert both.kind == "q8" and both.shape == (24, 96)  # mixed shards meet in q8, exactly
    assert both.q_range == (min(w.q_range[0], other.q_range[0]), max(w.q_range[1], other.q_range[1]))
    want = torch.cat([quant.dequantize_reference(w), quant.dequantize_reference(other)])
    assert torch.equal(quant.dequantize_reference(both), want)


def test_pack_names_the_bad_shape() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        quant.pack(torch.zeros(2, 48, dtype=torch.int32), torch.ones(2, 3), None)


@pytest.mark.parametrize("level", [Level.NONE, Level.AVX2], ids=["none", "avx2"])
def test_lower_levels_pass_these_tests(level, quant_kernels) -> None:
    """This file at a lower level in a subprocess; the library there reports that level's path."""
    if level >= isa().level:
        pytest.skip(f"this process already runs at {isa().level.label}")
    env = dict(os.environ, SGL_CPU_ISA=level.label)
    env.pop("SGL_CPU_KERNELS", None)
    probe = "from sgl.kernels import quant; print(quant.kernel_level().label)"
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == level.label, done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", "not lower_levels"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
