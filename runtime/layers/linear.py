"""Linear layers. A packed layer (fused q/k/v, fused gate/up) holds one weight and knows how to
load each checkpoint shard into its slice, so model files only declare the packing.

On a CPU with the tile unit (AMX), a bf16 model's weights are repacked once after loading
(`pack_tile_weights`) into the layout kernels/cpu/linear_tiles_bf16.c multiplies without
reordering, for every row count; the (N, K) weight is then dropped (`weight` is None)."""

from __future__ import annotations

import torch
from sgl.kernels.cpu import Level, isa
from sgl.kernels.linear import (
    linear_applies,
    linear_bf16,
    linear_tiles,
    pack_tiles,
    tiles_available,
)
from sgl.kernels.quant import (
    QuantWeight,
    dequantize_bf16,
    dequantize_reference,
    linear_quant,
    quant_applies,
)
from torch import nn
from torch.nn import functional as F

from ..device_caps import emulated_bf16
from .activation import gated, residual_add

# A bfloat16 product on a CPU without bf16 units: up to this many rows it stays in bf16, where
# reading the weight dominates and bf16 halves the bytes (batch-1 decode runs ~2.5x float32);
# above it the emulated bf16 GEMM is 4-8x slower than float32, so the weight is widened to
# float32 for the product (bf16 storage, float32 compute, output cast back).
BF16_NATIVE_MAX_ROWS = 4
# A quantized linear with more rows than this dequantizes its weight to bf16 for the float GEMM,
# per level of the C kernels. Measured on a 2-core Zen 4 (3072x576, GMAC/s, integer kernel vs
# dequantize + GEMM): AVX-512 VNNI 64 rows 180 vs 141, 256: 177 vs 181, 512: 158 vs 180; the
# AVX2 kernel (maddubs) against the float32 GEMM an emulated-bf16 CPU gets: 512 rows 95 vs 49,
# so there the integer kernel takes every size. AMX's tile GEMM is several times any of these;
# the portable C kernel is scalar.
QUANT_MAX_ROWS = {Level.NONE: 32, Level.AVX2: 1 << 62, Level.AVX512_BF16: 128, Level.AMX: 32}


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear; a few bf16 rows on a CPU with AVX-512 BF16 (decode) take the streaming kernel
    of kernels/cpu/linear_bf16.c; the bf16 policy above on CPUs that lack bf16 units."""
    if linear_applies(x, weight):
        return linear_bf16(x, weight, bias)
    if x.numel() > BF16_NATIVE_MAX_ROWS * x.shape[-1] and emulated_bf16(weight):
        wide_bias = None if bias is None else bias.float()
        return F.linear(x.float(), weight.float(), wide_bias).to(x.dtype)
    return F.linear(x, weight, bias)


def forward_quant(x: torch.Tensor, qweight: QuantWeight, bias: torch.Tensor | None,
                  out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x (..., K) @ qweight^T + bias: the integer kernel up to QUANT_MAX_ROWS rows, past them
    (a prefill) the weight dequantized to bf16 for the float GEMM above. out_dtype (default
    x's): float32 has the integer kernel write its sums unrounded (an LM head's logits)."""
    out_dtype = out_dtype or x.dtype
    rows = x.reshape(-1, qweight.shape[1])
    bias = None if bias is None else bias.data
    if quant_applies(rows, qweight) and (bias is None or bias.dtype == torch.bfloat16):
        if rows.shape[0] > QUANT_MAX_ROWS[isa().level]:
            return linear(x, dequantize_bf16(qweight), bias).to(out_dtype)
        return linear_quant(rows, qweight, bias, out_dtype).view(*x.shape[:-1], -1)
    # off bf16, zero rows or without the C library: the dequantized weight (slow, exact)
    return F.linear(x, dequantize_reference(qweight).to(x.dtype), bias).to(out_dtype)


def default_weight_loader(param: nn.Parameter, loaded: torch.Tensor) -> None:
    if param.shape != loaded.shape:
        raise ValueError(f"shape mismatch: parameter {tuple(param.shape)} vs checkpoint {tuple(loaded.shape)}")
    param.data.copy_(loaded)


def transposed_weight_loader(param: nn.Parameter, loaded: torch.Tensor, shard: str | int | None = None) -> None:
    """GPT-2's Conv1D stores (in_features, out_features); ours is (out, in)."""
    default_weight_loader(param, loaded.t())


class Linear(nn.Module):
    """y = x W^T + b, weight (out_features, in_features). `transposed=True`: the checkpoint stores
    the weight as (in_features, out_features) (GPT-2's Conv1D).

    After `pack_tiles()` the weight lives in `tiles` (sgl.kernels.linear.pack_tiles) and
    `weight` is None; `forward(x, residual)` then adds the residual inside the product."""

    tiles: torch.Tensor | None = None
    qweight: QuantWeight | None = None  # set_qweight: the weight quantized, `weight` then None
    gated_tiles = False  # tiles interleave gate and up panels: only `GateUpLinear.silu_mul` applies

    def __init__(self, in_features: int, out_features: int, bias: bool = False, transposed: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None
        if transposed:
            self.weight.weight_loader = transposed_weight_loader  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features); + residual (same shape) when given."""
        if self.qweight is not None:
            out = self._forward_quant(x)
            return out if residual is None else residual_add(residual, out)
        if self.tiles is None:
            out = linear(x, self.weight, self.bias)
            return out if residual is None else residual_add(residual, out)
        assert not self.gated_tiles, "gated tiles give silu(gate) * up: call silu_mul"
        rows = x.reshape(-1, self.in_features)
        res = None if residual is None else residual.reshape(rows.shape[0], self.out_features).contiguous()
        return linear_tiles(rows, self.tiles, self.out_features, self.bias, res).view(*x.shape[:-1], -1)

    def set_qweight(self, qweight: QuantWeight) -> None:
        """Run on a quantized weight (sgl.kernels.quant) from now on; the float one is dropped."""
        self.qweight = qweight
        del self.weight
        self.weight = None

    def _forward_quant(self, x: torch.Tensor) -> torch.Tensor:
        return forward_quant(x, self.qweight, self.bias)

    def pack_tiles(self, gated: bool = False) -> bool:
        """Repack a loaded bf16 CPU weight for the tile kernel where this CPU has one; the (N, K)
        weight is dropped. Whether it was packed (or already is)."""
        if self.tiles is not None:
            return True
        if self.qweight is not None:
            return False
        w = self.weight
        if w.dtype != torch.bfloat16 or w.device.type != "cpu" or (gated and self.bias is not None):
            return False
        if not tiles_available(self.in_features, self.out_features, gated):
            return False
        self.tiles, self.gated_tiles = pack_tiles(w.data, gated), gated
        del self.weight
        self.weight = None
        return True


class PackedLinear(Linear):
    """Several projections of the same input in one matmul. `shards` names each output slice in
    order with its width, e.g. {"q": 576, "k": 192, "v": 192}; checkpoint tensors load by name.
    A checkpoint tensor that is already fused loads whole (shard None), through `fused_order`
    when the checkpoint orders its rows differently, and transposed when `transposed`."""

    fused_order: torch.Tensor | None = None  # row i of ours = row fused_order[i] of the checkpoint

    def __init__(self, in_features: int, shards: dict[str | int, int], bias: bool = False,
                 transposed: bool = False) -> None:
        super().__init__(in_features, sum(shards.values()), bias)
        self.transposed = transposed
        self.shard_offsets: dict[str | int, tuple[int, int]] = {}
        offset = 0
        for name, width in shards.items():
            self.shard_offsets[name] = (offset, width)
            offset += width
        for p in (self.weight, self.bias):
            if p is not None:
                p.weight_loader = self._load_shard  # type: ignore[attr-defined]
                p.shards = tuple(shards)  # type: ignore[attr-defined]

    def _load_shard(self, param: nn.Parameter, loaded: torch.Tensor, shard: str | int | None = None) -> None:
        if self.transposed and param is self.weight:
            loaded = loaded.t()
        if shard is None:  # an already-fused checkpoint tensor (e.g. Phi-3's qkv_proj)
            default_weight_loader(param, loaded if self.fused_order is None else loaded[self.fused_order])
            return
        offset, width = self.shard_offsets[shard]
        target = param.data.narrow(0, offset, width)
        if target.shape != loaded.shape:
            raise ValueError(f"shard {shard!r}: expected {tuple(target.shape)}, checkpoint has {tuple(loaded.shape)}")
        target.copy_(loaded)

    def split(self, y: torch.Tensor) -> list[torch.Tensor]:
        return list(y.split([w for _, w in self.shard_offsets.values()], dim=-1))


class QKVLinear(PackedLinear):
    """Fused q/k/v projection for `num_heads` query heads and `num_kv_heads` key/value heads.

    grouped_checkpoint=True: a fused checkpoint tensor groups its rows per key/value head,
    (kv_heads, heads // kv_heads + 2, head_dim) = [q heads of the group..., k, v] (GPT-NeoX,
    Bloom, Persimmon, Falcon); ours is [all q; all k; all v]."""

    def __init__(self, hidden: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool = False,
                 transposed: bool = False, grouped_checkpoint: bool = False) -> None:
        super().__init__(hidden, {"q": num_heads * head_dim, "k": num_kv_heads * head_dim,
                                  "v": num_kv_heads * head_dim}, bias, transposed)
        if grouped_checkpoint:
            group = num_heads // num_kv_heads
            rows = torch.arange(num_kv_heads * (group + 2) * head_dim, device="cpu")
            rows = rows.view(num_kv_heads, group + 2, head_dim)  # checkpoint row of each element
            q = rows[:, :group].reshape(-1)  # (heads * head_dim,) q rows, head after head
            self.fused_order = torch.cat((q, rows[:, group].reshape(-1), rows[:, group + 1].reshape(-1)))


class GateUpLinear(PackedLinear):
    """Fused gate/up projection of a gated MLP; shard 0 is gate, shard 1 is up."""

    def __init__(self, hidden: int, intermediate: int, bias: bool = False, transposed: bool = False) -> None:
        super().__init__(hidden, {0: intermediate, 1: intermediate}, bias, transposed)

    def silu_mul(self, x: torch.Tensor) -> torch.Tensor:
        """silu(gate) * up, (..., intermediate); one kernel with gated tiles."""
        if not self.gated_tiles:
            return gated(F.silu, self(x))
        rows = x.reshape(-1, self.in_features)
        return linear_tiles(rows, self.tiles, self.out_features, gated=True).view(*x.shape[:-1], -1)


def pack_tile_weights(model: nn.Module) -> int:
    """Repack every linear weight of a loaded model for the tile kernel (see the module doc);
    a module may take its own `pack_tiles` first (a gated MLP packs gate/up for silu_mul).
    The number of linear layers packed; 0 off bf16, off the CPU or without the tile unit."""
    for module in model.modules():  # parents before children: an MLP's choice comes first
        hook = getattr(module, "pack_tiles", None)
        if hook is not None and getattr(module, "tiles", None) is None:
            hook()
    return sum(isinstance(m, Linear) and m.tiles is not None for m in model.modules())
