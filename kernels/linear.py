"""bf16 linear on the CPU and its torch references: the small-batch kernel over weights as
loaded (kernels/cpu/linear_bf16.c: the LM head, and every linear on CPUs without AMX), and the
tile kernel over weights packed once (kernels/cpu/linear_tiles_bf16.c: every row count)."""

from __future__ import annotations

import functools

import torch

from .cpu import Level, bf16_library, dispatch, isa, simd_path, tile_path, vector_path

# Rows up to which the kernel beats oneDNN: with the tile unit (AMX) one pass over the weights
# serves 32 rows (M = 1: 14 ms against 21 for 30 layers of SmolLM2-135M; M = 32: 23 against
# 24); the dot-product loop without it is compute-bound past 4 rows. On AVX2 (widened float32
# FMAs, ~25 GMAC/s a core) the kernel stays ahead of a native bf16 oneDNN GEMM up to
# AVX2_MAX_ROWS rows, and of an emulated one (an AVX2-only CPU: ~4.5 GMAC/s) at every size.
TILE_MAX_ROWS, DOT_MAX_ROWS, AVX2_MAX_ROWS = 32, 4, 16
ANY_ROWS = 1 << 62


@functools.cache
def max_rows(in_features: int) -> int:
    """Rows the kernel takes for a weight with this many columns (the tile path needs a multiple
    of 32); the same kernel serves every row count up to it, so a row's result never depends on
    the other rows in the product. Cached: it is asked on every linear call."""
    if not simd_path():
        return 0  # level none: the scalar loop is slower than oneDNN at every size
    if not vector_path():
        return AVX2_MAX_ROWS if isa().torch_bf16 else ANY_ROWS
    return TILE_MAX_ROWS if in_features % 32 == 0 and tile_path() else DOT_MAX_ROWS


def linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """What the kernel computes: float32 sums of bf16 products, rounded once to bf16."""
    out = x.float() @ weight.float().t()
    if bias is not None:
        out = out + bias.float()
    return out.to(torch.bfloat16)


def linear_applies(x: torch.Tensor, weight: torch.Tensor, capped: bool = True) -> bool:
    """Whether `linear_bf16` serves this product: bf16 CPU tensors, level avx2 or above, 1 to
    `max_rows` rows (0 rows: nothing to stream, torch's empty product). capped=False: any row
    count above 0, which the kernel computes correctly, row by row, but past the cap slower
    than oneDNN (tests of row invariance use it)."""
    rows = x.shape[0] if x.dim() == 2 else 0
    return (x.dim() == 2 and weight.dim() == 2 and x.shape[1] == weight.shape[1] and rows > 0
            and (not capped or rows <= max_rows(x.shape[1])) and weight.is_contiguous()
            and bf16_library(x, weight, level=Level.AVX2) is not None)


def linear_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N), all bf16 on the CPU, where
    `linear_applies(capped=False)`; callers dispatch on the capped predicate."""
    assert linear_applies(x, weight, capped=False), (x.dtype, x.shape, weight.shape, isa().level.label)
    lib = bf16_library(x, weight, level=Level.AVX2)
    assert bias is None or (bias.is_contiguous() and bias.dtype == torch.bfloat16)
    dispatch["linear"] += 1
    x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    out = torch.empty(m, n, dtype=torch.bfloat16)
    packed = torch.empty((m + 31) // 32 * 32 * k, dtype=torch.bfloat16)  # x in the tile kernel's layout
    lib.sgl_linear_rows_bf16(x.data_ptr(), weight.data_ptr(), None if bias is None else bias.data_ptr(),
                             out.data_ptr(), m, n, k, packed.data_ptr())
    return out


# ---- packed weights on the tile unit (kernels/cpu/linear_tiles_bf16.c) ------------------------
TILE_COLUMNS, TILE_DEPTH = 16, 32  # a packed tile: 16 output columns x 32 of K (16 pairs x 2)


def tiles_available(in_features: int, out_features: int, gated: bool = False) -> bool:
    """Whether a weight of this shape can be packed for the tile kernel: AMX usable in this
    process, K a multiple of 32, and (gated) each half a multiple of 16 columns."""
    if in_features % TILE_DEPTH or (gated and out_features % (2 * TILE_COLUMNS)):
        return False
    return isa().level >= Level.AMX and tile_path()


def pack_tiles(weight: torch.Tensor, gated: bool = False) -> torch.Tensor:
    """weight (N, K) -> tiles (panels, K / 32, 16, 16, 2): panel p holds output columns
    16p..16p+15, N zero-padded to a multiple of 32; within a 32-column chunk of K, 16 pairs of
    k x 16 columns x 2 (the tile unit's B layout). gated: weight is [gate; up] (2I, K) and
    panels alternate gate and up columns, panel 2j gate 16j.., panel 2j + 1 up 16j..."""
    n, k = weight.shape
    if gated:
        gate, up = weight.view(2, n // 2 // TILE_COLUMNS, TILE_COLUMNS, k).unbind(0)
        weight = torch.stack((gate, up), dim=1).reshape(n, k)  # (panels, 16, K) gate and up in turn
    padded = -n % (2 * TILE_COLUMNS)
    if padded:
        weight = torch.cat((weight, weight.new_zeros(padded, k)))
    panels = weight.shape[0] // TILE_COLUMNS
    tiles = weight.view(panels, TILE_COLUMNS, k // TILE_DEPTH, TILE_DEPTH // 2, 2)
    return tiles.permute(0, 2, 3, 1, 4).contiguous()


def unpack_tiles(tiles: torch.Tensor, out_features: int, gated: bool = False) -> torch.Tensor:
    """The (N, K) weight back from `pack_tiles`."""
    panels, chunks = tiles.shape[:2]
    weight = tiles.permute(0, 3, 1, 2, 4).reshape(panels * TILE_COLUMNS, chunks * TILE_DEPTH)[:out_features]
    if gated:
        pairs = weight.view(out_features // 2 // TILE_COLUMNS, 2, TILE_COLUMNS, -1)
        weight = torch.cat((pairs[:, 0].flatten(0, 1), pairs[:, 1].flatten(0, 1)))
    return weight


def linear_tiles_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                           residual: torch.Tensor | None = None, gated: bool = False) -> torch.Tensor:
    """What the tile kernel computes, rounding as the unfused ops do: the product in float32
    rounded to bf16 (+ residual, rounded again), or silu(gate) * up of the rounded product."""
    out = linear_reference(x, weight, bias)
    if gated:
        gate, up = out.chunk(2, dim=-1)
        return torch.nn.functional.silu(gate) * up
    return out if residual is None else residual + out


def linear_tiles(x: torch.Tensor, tiles: torch.Tensor, out_features: int, bias: torch.Tensor | None = None,
                 residual: torch.Tensor | None = None, gated: bool = False) -> torch.Tensor:
    """x (M, K) bf16 against a packed weight (`pack_tiles`) of `out_features` outputs, any M ->
    (M, out_features), + bias, + residual (M, out_features); gated -> (M, out_features / 2)."""
    lib = bf16_library(x, tiles, level=Level.AMX)
    assert lib is not None and tile_path() and x.dim() == 2, (x.dtype, x.shape)
    dispatch["linear_tiles"] += 1
    assert x.shape[1] == tiles.shape[1] * TILE_DEPTH, (x.shape, tiles.shape)
    assert bias is None or (bias.dtype == torch.bfloat16 and bias.is_contiguous() and not gated)
    assert residual is None or (residual.shape == (x.shape[0], out_features) and residual.is_contiguous()
                                and residual.dtype == torch.bfloat16 and not gated)
    x = x.contiguous()
    m, k = x.shape
    out = torch.empty(m, out_features // 2 if gated else out_features, dtype=torch.bfloat16)
    lib.sgl_linear_tiles_bf16(x.data_ptr(), tiles.data_ptr(), None if bias is None else bias.data_ptr(),
                              None if residual is None else residual.data_ptr(), out.data_ptr(), m, out_features, k,
                              int(gated))
    return out
