"""Linear over quantized weights on the CPU (kernels/cpu/linear_quant.c) and its torch references.

A weight is held as integers q with a scale d and a min m per block, w = d q + m:
  "q4": q in [0, 15], blocks of 32 columns, nibbles packed two to a byte (Q4_0, Q4_1, Q4_K);
  "q8": int8 q, blocks of 16 columns (Q8_0, Q5_0, Q5_1, Q5_K, Q6_K: Q6_K scales every 16).
Every GGUF type the engine runs maps onto one of the two exactly (runtime/loader/gguf_quant.py).
Activations are quantized per row to int8 blocks of 32 (llama.cpp's q8_0 rule), products run
in integer arithmetic and the scales apply per block; a row's result never depends on the other
rows of the call.
"""

from __future__ import annotations

import ctypes
import dataclasses

import torch

from .cpu import Level, dispatch, isa, library

KINDS = {"q4": 0, "q8": 1}
BLOCK = {"q4": 32, "q8": 16}  # columns per scale


class QWeightStruct(ctypes.Structure):
    """sgl_qweight in kernels/cpu/kernels.h."""

    _fields_ = [("kind", ctypes.c_int64), ("qs", ctypes.c_void_p), ("d", ctypes.c_void_p), ("m", ctypes.c_void_p)]


@dataclasses.dataclass(eq=False)
class QuantWeight:
    """A (out_features, in_features) weight in the kernel's layout. qs: q4 (N, K/2) uint8, in
    each 64-column group byte j = column j | column j+32 << 4 (a last 32: j | j+16 << 4); q8
    (N, K) int8. d, m: float32 (N, K / BLOCK[kind]); m None where every min is zero."""

    kind: str
    qs: torch.Tensor
    d: torch.Tensor
    m: torch.Tensor | None
    source: str = ""  # the GGUF type(s) it came from, for logs and tests

    def __post_init__(self) -> None:
        self.struct = QWeightStruct(KINDS[self.kind], self.qs.data_ptr(), self.d.data_ptr(),
                                    None if self.m is None else self.m.data_ptr())

    @property
    def shape(self) -> tuple[int, int]:
        return self.d.shape[0], self.d.shape[1] * BLOCK[self.kind]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.qs, self.d, self.m) if t is not None)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """q (N, K) in [0, 15], K % 32 == 0 -> (N, K/2) uint8 in the q4 layout."""
    n, k = q.shape
    full = k // 64 * 64
    groups = q[:, :full].reshape(n, -1, 2, 32)
    parts = [(groups[:, :, 0] | (groups[:, :, 1] << 4)).reshape(n, -1)]
    if k % 64:
        tail = q[:, full:].reshape(n, 2, 16)
        parts.append(tail[:, 0] | (tail[:, 1] << 4))
    return torch.cat(parts, dim=1).to(torch.uint8)


def _unpack_nibbles(qs: torch.Tensor, k: int) -> torch.Tensor:
    n = qs.shape[0]
    full = k // 64 * 64
    g = qs[:, : full // 2].to(torch.int32).reshape(n, -1, 32)
    parts = [torch.stack((g & 15, g >> 4), dim=2).reshape(n, -1)]
    if k % 64:
        t = qs[:, full // 2:].to(torch.int32)
        parts.append(torch.cat((t & 15, t >> 4), dim=1))
    return torch.cat(parts, dim=1)


def pack(q: torch.Tensor, d16: torch.Tensor, m16: torch.Tensor | None, source: str = "") -> QuantWeight:
    """Integers q (N, K) and per-16 scales/mins (N, K/16), w = d q + m, into the kernel layout:
    q4 where q is in [0, 15] and scales and mins are constant over each 32, else q8 (q must be
    in [-128, 127])."""
    n, k = q.shape
    if k % 32 or d16.shape != (n, k // 16) or (m16 is not None and m16.shape != d16.shape):
        raise ValueError(f"quantized weight: K={k} must be a multiple of 32 with (N, K/16) scales, got "
                         f"q {tuple(q.shape)}, d {tuple(d16.shape)}")
    pairs = lambda t: t is None or bool((t[:, 0::2] == t[:, 1::2]).all())  # noqa: E731
    if int(q.min()) >= 0 and int(q.max()) <= 15 and pairs(d16) and pairs(m16):
        m = None if m16 is None or not m16.any() else m16[:, 0::2].float().contiguous()
        return QuantWeight("q4", _pack_nibbles(q.to(torch.int32)), d16[:, 0::2].float().contiguous(), m, source)
    if int(q.min()) < -128 or int(q.max()) > 127:
        raise ValueError(f"quantized weight ({source}): integers outside int8 ({int(q.min())}..{int(q.max())})")
    m = None if m16 is None or not m16.any() else m16.float().contiguous()
    return QuantWeight("q8", q.to(torch.int8).contiguous(), d16.float().contiguous(), m, source)


def unpack(w: QuantWeight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q (N, K) int32, d16, m16) back from the kernel layout (per-16 scales and mins)."""
    n, k = w.shape
    if w.kind == "q4":
        q, d, m = _unpack_nibbles(w.qs, k), w.d.repeat_interleave(2, 1), w.m
        m = torch.zeros_like(d) if m is None else m.repeat_interleave(2, 1)
    else:
        q, d = w.qs.to(torch.int32), w.d
        m = torch.zeros_like(d) if w.m is None else w.m
    return q, d, m


def concat(weights: list[QuantWeight]) -> QuantWeight:
    """Row-wise concatenation (fused q/k/v, gate/up); shards of different kinds meet in q8."""
    parts = [unpack(w) for w in weights]
    q, d, m = (torch.cat([p[i] for p in parts]) for i in range(3))
    return pack(q, d, m, "+".join(dict.fromkeys(w.source for w in weights)))


def select_rows(w: QuantWeight, rows: torch.Tensor) -> QuantWeight:
    """The weight's rows in the order `rows` gives (q/k un-permutation)."""
    return QuantWeight(w.kind, w.qs[rows].contiguous(), w.d[rows].contiguous(),
                       None if w.m is None else w.m[rows].contiguous(), w.source)


def dequantize_reference(w: QuantWeight) -> torch.Tensor:
    """The weight in float32 (N, K): d q + m."""
    q, d, m = unpack(w)
    return q.float() * d.repeat_interleave(16, 1) + m.repeat_interleave(16, 1)


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


def linear_quant(x: torch.Tensor, w: QuantWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) bf16 @ w^T + bias -> (M, N) bf16, where `quant_applies`."""
    assert quant_applies(x, w), (x.dtype, tuple(x.shape), w.shape, isa().level.label)
    assert bias is None or (bias.dtype == torch.bfloat16 and bias.is_contiguous())
    dispatch["linear_quant"] += 1
    x = x.contiguous()
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.bfloat16)
    library().sgl_linear_quant_bf16(x.data_ptr(), ctypes.addressof(w.struct), None if bias is None else bias.data_ptr(),
                                    out.data_ptr(), x.shape[0], w.shape[0], x.shape[1])
    return out


def dequantize_bf16(w: QuantWeight) -> torch.Tensor:
    """The weight as bf16 (N, K), by the C library (a prefill's float GEMM)."""
    n, k = w.shape
    out = torch.empty(n, k, dtype=torch.bfloat16)
    library().sgl_dequantize_bf16(ctypes.addressof(w.struct), out.data_ptr(), 0, n, k)
    return out
