"""Linear over quantized weights on the CPU (kernels/cpu/linear_quant.c) and its torch references.

A weight is held as integers q with a scale d and a min m per block, w = d q + m:
  "q4": q in [0, 15], blocks of 32 columns, nibbles packed two to a byte (Q4_0, Q4_1, Q4_K);
  "q8": q in [-128, 127] (held as q + 128 in a byte), blocks of 32 columns (Q8_0, Q5_0, Q5_1,
        Q5_K) or 16 (Q6_K scales every 16).
Every GGUF type the engine runs maps onto one of the two exactly (runtime/loader/gguf_quant.py).
The rows sit in groups of 16, interleaved 4 bytes at a time, so the kernel's 16 vector lanes are
16 outputs (the layout is drawn in linear_quant.c). Activations are quantized per row to int8
blocks of 32 (llama.cpp's q8_0 rule), products run in integer arithmetic and the scales apply
per block; a row's result never depends on the other rows of the call.
"""

from __future__ import annotations

import ctypes
import dataclasses

import torch

from .cpu import Level, dispatch, isa, library

KINDS = {"q4": 0, "q8": 1}
GROUP = 16  # weight rows interleaved together (the kernel's vector lanes)


class QWeightStruct(ctypes.Structure):
    """sgl_qweight in kernels/cpu/kernels.h."""

    _fields_ = [("kind", ctypes.c_int64), ("block", ctypes.c_int64), ("qs", ctypes.c_void_p),
                ("d", ctypes.c_void_p), ("m", ctypes.c_void_p), ("f16", ctypes.c_int64), ("q_min", ctypes.c_int64),
                ("q_max", ctypes.c_int64)]


@dataclasses.dataclass(eq=False)
class QuantWeight:
    """An (n, k) weight in the kernel's layout, its rows padded to groups of 16 (G = ceil(n / 16)).
    qs uint8: q4 (G, K/32, 4, 16, 4) [block][v][row][t] = column 4v+t | column 16+4v+t << 4;
    q8 (G, K/16, 4, 16, 4) = q + 128 of column 4v+t of each 16. d, m: (G, K / block, 16), float16
    where that holds every scale and min exactly (the file stored them so), else float32; m None
    where every min is zero."""

    kind: str
    block: int  # columns per scale: 32, or 16 (q8 from Q6_K)
    n: int  # rows (out_features); the rows past it in the last group are zero
    qs: torch.Tensor
    d: torch.Tensor
    m: torch.Tensor | None
    source: str = ""  # the GGUF type(s) it came from, for logs and tests
    q_range: tuple[int, int] = (-128, 127)  # the integers' least and greatest (Q5_*: 32 values; AVX2 uses it)

    def __post_init__(self) -> None:
        assert self.m is None or self.m.dtype == self.d.dtype
        self.struct = QWeightStruct(KINDS[self.kind], self.block, self.qs.data_ptr(), self.d.data_ptr(),
                                    None if self.m is None else self.m.data_ptr(), int(self.d.dtype == torch.float16),
                                    *self.q_range)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n, self.d.shape[1] * self.block

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.qs, self.d, self.m) if t is not None)


def _groups(t: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (G, 16, ...): rows padded with zeros to whole groups."""
    pad = -t.shape[0] % GROUP
    if pad:
        t = torch.cat([t, t.new_zeros(pad, *t.shape[1:])])
    return t.reshape(-1, GROUP, *t.shape[1:])


def _interleave(q: torch.Tensor, kind: str) -> torch.Tensor:
    """q (n, K) integers -> qs in the kernel layout (see QuantWeight)."""
    g = _groups(q)  # (G, 16, K)
    if kind == "q4":
        c = g.reshape(g.shape[0], GROUP, -1, 2, 4, 4)  # [G][row][block][lo/hi 16][v][t]
        byte = c[:, :, :, 0] | (c[:, :, :, 1] << 4)  # [G][row][block][v][t]
        return byte.permute(0, 2, 3, 1, 4).to(torch.uint8).contiguous()
    c = (g + 128).reshape(g.shape[0], GROUP, -1, 4, 4)  # [G][row][16 columns][v][t]
    return c.permute(0, 2, 3, 1, 4).to(torch.uint8).contiguous()


def _rows_of(qs: torch.Tensor, kind: str, groups: torch.Tensor, lanes: torch.Tensor) -> torch.Tensor:
    """q (R, K) int32 of the rows at (group, lane) pairs."""
    picked = qs[groups, :, :, lanes, :].to(torch.int32)  # (R, blocks, v, t)
    r = picked.shape[0]
    if kind == "q4":
        picked = picked.reshape(r, -1, 16)
        return torch.cat((picked & 15, picked >> 4), dim=2).reshape(r, -1)
    return picked.reshape(r, -1) - 128


def _scales(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, blocks) float -> (G, blocks, 16) `dtype` in the kernel layout."""
    return _groups(t.float()).transpose(1, 2).to(dtype).contiguous()


def _exact_in_half(*ts: torch.Tensor | None) -> bool:
    return all(t is None or torch.equal(t.float().half().float(), t.float()) for t in ts)


def pack(q: torch.Tensor, d16: torch.Tensor, m16: torch.Tensor | None, source: str = "") -> QuantWeight:
    """Integers q (N, K) and per-16 scales/mins (N, K/16), w = d q + m, into the kernel layout:
    q4 where q is in [0, 15] and scales and mins are constant over each 32, else q8 (q must be
    in [-128, 127]), with one scale per 32 where they allow it."""
    n, k = q.shape
    if k % 32 or d16.shape != (n, k // 16) or (m16 is not None and m16.shape != d16.shape):
        raise ValueError(f"quantized weight: K={k} must be a multiple of 32 with (N, K/16) scales, got "
                         f"q {tuple(q.shape)}, d {tuple(d16.shape)}")
    pairs = lambda t: t is None or bool((t[:, 0::2] == t[:, 1::2]).all())  # noqa: E731
    block = 32 if pairs(d16) and pairs(m16) else 16
    kind = "q4" if int(q.min()) >= 0 and int(q.max()) <= 15 and block == 32 else "q8"
    if kind == "q8" and (int(q.min()) < -128 or int(q.max()) > 127):
        raise ValueError(f"quantized weight ({source}): integers outside int8 ({int(q.min())}..{int(q.max())})")
    per_block = (lambda t: t[:, 0::2]) if block == 32 else (lambda t: t)  # noqa: E731
    d = per_block(d16)
    m = None if m16 is None or not m16.any() else per_block(m16)
    dtype = torch.float16 if _exact_in_half(d, m) else torch.float32
    return QuantWeight(kind, block, n, _interleave(q.to(torch.int32), kind), _scales(d, dtype),
                       None if m is None else _scales(m, dtype), source, (int(q.min()), int(q.max())))


def _row_scales(t: torch.Tensor, groups: torch.Tensor, lanes: torch.Tensor, block: int) -> torch.Tensor:
    """(G, blocks, 16) -> per-16 (R, K/16) of the picked rows."""
    picked = t[groups, :, lanes].float()  # (R, blocks)
    return picked.repeat_interleave(block // 16, 1)


def _unpack_rows(w: QuantWeight, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    groups, lanes = rows // GROUP, rows % GROUP
    q = _rows_of(w.qs, w.kind, groups, lanes)
    d = _row_scales(w.d, groups, lanes, w.block)
    m = torch.zeros_like(d) if w.m is None else _row_scales(w.m, groups, lanes, w.block)
    return q, d, m


def unpack(w: QuantWeight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q (N, K) int32, d16, m16) back from the kernel layout (per-16 scales and mins)."""
    return _unpack_rows(w, torch.arange(w.n))


def concat(weights: list[QuantWeight]) -> QuantWeight:
    """Row-wise concatenation (fused q/k/v, gate/up); shards of different kinds meet in q8."""
    parts = [unpack(w) for w in weights]
    q, d, m = (torch.cat([p[i] for p in parts]) for i in range(3))
    return pack(q, d, m, "+".join(dict.fromkeys(w.source for w in weights)))


def dequantize_rows(w: QuantWeight, rows: torch.Tensor) -> torch.Tensor:
    """Rows `rows` (R,) of the weight in float32 (R, K): d q + m (an embedding lookup)."""
    q, d, m = _unpack_rows(w, rows.long())
    return q.float() * d.repeat_interleave(16, 1) + m.repeat_interleave(16, 1)


def dequantize_reference(w: QuantWeight) -> torch.Tensor:
    """The weight in float32 (N, K): d q + m."""
    return dequantize_rows(w, torch.arange(w.n))


def quantize_rows_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) -> (q int32 (M, K), dx (M, K/32)) by the kernel's rule: dx = amax / 127 in
    float32, q = round(x * (1 / dx)) with ties to even (0 where a block is all zero)."""
    m, k = x.shape
    blocks = x.float().reshape(m, k // 32, 32)
    d = blocks.abs().amax(-1) / 127.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    return torch.round(blocks * inv.unsqueeze(-1)).to(torch.int32).reshape(m, k), d


def linear_quant_reference(x: torch.Tensor, w: QuantWeight, bias: torch.Tensor | None = None,
                           quantize_x: bool = True) -> torch.Tensor:
    """The product in float32, rounded once to x's dtype. quantize_x: x through the kernel's
    int8 blocks first (what the kernel computes, up to summation order); False: the plain
    dequantize-then-multiply reference."""
    xf = x.float()
    if quantize_x:
        q, d = quantize_rows_reference(x)
        xf = (q.float().reshape(*d.shape, 32) * d.unsqueeze(-1)).reshape(x.shape)
    out = xf @ dequantize_reference(w).t()
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype)


def quant_applies(x: torch.Tensor, w: QuantWeight) -> bool:
    """Whether the kernel serves x @ w^T: x (M >= 1, K) bf16 on the CPU, K a multiple of 32,
    the C library built (every level has a path: VNNI, AVX2, portable)."""
    return (x.dim() == 2 and x.shape[0] > 0 and x.shape[1] == w.shape[1] and x.dtype == torch.bfloat16
            and x.device.type == "cpu" and library() is not None)


def kernel_level() -> Level:
    """The level the library's quantized products were built for (AVX-512 needs VNNI too)."""
    lib = library()
    assert lib is not None
    return (Level.NONE, Level.AVX2, Level.AVX512_BF16)[lib.sgl_quant_level()]


def linear_quant(x: torch.Tensor, w: QuantWeight, bias: torch.Tensor | None = None,
                 out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """x (M, K) bf16 @ w^T + bias -> (M, N) bf16, where `quant_applies`; out_dtype float32 keeps
    the sums unrounded (an LM head's logits: no bf16 rounding, no widening copy after)."""
    assert quant_applies(x, w), (x.dtype, tuple(x.shape), w.shape, isa().level.label)
    assert bias is None or (bias.dtype == torch.bfloat16 and bias.is_contiguous())
    assert out_dtype in (torch.bfloat16, torch.float32), out_dtype
    dispatch["linear_quant"] += 1
    x = x.contiguous()
    out = torch.empty(x.shape[0], w.shape[0], dtype=out_dtype)
    product = library().sgl_linear_quant_f32 if out_dtype == torch.float32 else library().sgl_linear_quant_bf16
    product(x.data_ptr(), ctypes.addressof(w.struct), None if bias is None else bias.data_ptr(), out.data_ptr(),
            x.shape[0], w.shape[0], x.shape[1])
    return out


def dequantize_bf16(w: QuantWeight) -> torch.Tensor:
    """The weight as bf16 (N, K), by the C library (a prefill's float GEMM)."""
    n, k = w.shape
    out = torch.empty(n, k, dtype=torch.bfloat16)
    library().sgl_dequantize_bf16(ctypes.addressof(w.struct), out.data_ptr(), 0, n, k)
    return out
