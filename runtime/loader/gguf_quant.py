"""GGUF block types unpacked, once at load, into the quantized kernel's layouts (sgl.kernels.quant).

Each supported type is integers q with a scale d and a min m per block, w = d q + m, read here
exactly (no float round trip):
  Q4_0 (18 bytes / 32): f16 d, 16 bytes of nibbles (low: element j, high: j + 16); w = d (q - 8)
  Q4_1 (20 bytes / 32): f16 d, f16 m, nibbles as Q4_0; w = d q + m
  Q5_0 (22 bytes / 32): f16 d, u32 fifth bits, nibbles; w = d (q - 16)
  Q5_1 (24 bytes / 32): f16 d, f16 m, u32 fifth bits, nibbles; w = d q + m
  Q8_0 (34 bytes / 32): f16 d, 32 int8; w = d q
Q4_0 and Q4_1 land in the "q4" layout, the others in "q8". The K-quants (Q2_K..Q6_K) unpack in
gguf_kquant.py (Q4_K into "q4", the others "q8"). Tensors of other types (F32, F16, IQ*) stay
dequantized, as loaded.
"""

from __future__ import annotations

import numpy as np
import torch
from sgl.kernels.quant import QuantWeight, pack

from .gguf_file import _PERMUTED_QK, _hf_name, _unpermute
from .gguf_kquant import BLOCK_BYTES as K_BLOCK_BYTES
from .gguf_kquant import unpack_kquant

BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24, "Q8_0": 34}
SUPPORTED = (*BLOCK_BYTES, *K_BLOCK_BYTES)


def _f16(blocks: torch.Tensor, at: int) -> torch.Tensor:
    """(N, nb, bytes) uint8 -> (N, nb) float32 of the f16 at byte `at` of each block."""
    return blocks[..., at:at + 2].contiguous().view(torch.float16).squeeze(-1).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(N, nb, 16) uint8 -> (N, nb, 32) int32: low nibbles are elements 0-15, high 16-31."""
    q = qs.to(torch.int32)
    return torch.cat((q & 15, q >> 4), dim=-1)


def _fifth_bits(qh: torch.Tensor) -> torch.Tensor:
    """(N, nb, 4) uint8, a little-endian u32 per block -> (N, nb, 32) int32 bit j of element j."""
    word = qh.to(torch.int64)
    word = word[..., 0] | word[..., 1] << 8 | word[..., 2] << 16 | word[..., 3] << 24
    return ((word.unsqueeze(-1) >> torch.arange(32)) & 1).to(torch.int32)


def unpack_blocks(kind: str, raw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """raw (N, K / 32 * bytes) uint8 of one GGUF type (K / 256 super-blocks for a K-quant) ->
    q (N, K) int32, d16 and m16 (N, K/16)."""
    if kind in K_BLOCK_BYTES:
        return unpack_kquant(kind, raw, k)
    n = raw.shape[0]
    blocks = raw.reshape(n, k // 32, BLOCK_BYTES[kind])
    d = _f16(blocks, 0)
    m = None
    if kind == "Q8_0":
        q = blocks[..., 2:].contiguous().view(torch.int8).to(torch.int32)
    elif kind == "Q4_0":
        q, m = _nibbles(blocks[..., 2:18]), -8.0 * d
    elif kind == "Q4_1":
        q, m = _nibbles(blocks[..., 4:20]), _f16(blocks, 2)
    elif kind == "Q5_0":
        q = (_nibbles(blocks[..., 6:22]) | _fifth_bits(blocks[..., 2:6]) << 4) - 16
    elif kind == "Q5_1":
        q, m = _nibbles(blocks[..., 8:24]) | _fifth_bits(blocks[..., 4:8]) << 4, _f16(blocks, 2)
    else:
        raise ValueError(f"GGUF type {kind} has no quantized unpacking: use quantization='none'")
    per16 = lambda t: None if t is None else t.repeat_interleave(2, dim=1)  # noqa: E731
    return q.reshape(n, k), per16(d), per16(m)


def read_quantized(path: str, num_heads: int, num_kv_heads: int) -> dict[str, QuantWeight]:
    """Every 2-D tensor of a supported type in the GGUF file `path`, by Hugging Face name, with
    llama.cpp's q/k row permutation undone (rows move whole, so exactly)."""
    import gguf

    reader = gguf.GGUFReader(path)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    out: dict[str, QuantWeight] = {}
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind not in SUPPORTED or len(t.shape) != 2:
            continue
        k, n = (int(s) for s in t.shape)  # GGUF lists ne0 (the row length) first
        raw = torch.from_numpy(np.array(t.data)).reshape(n, -1)
        q, d, m = unpack_blocks(kind, raw, k)
        name = _hf_name(t.name, arch)
        heads = num_heads if name.endswith("q_proj.weight") else num_kv_heads
        if arch in _PERMUTED_QK and name.endswith(("q_proj.weight", "k_proj.weight")):
            rows = _unpermute(torch.arange(n), heads)
            q, d, m = q[rows], d[rows], None if m is None else m[rows]
        out[name] = pack(q, d, m, source=kind)
    return out
