"""GGUF K-quant super-blocks (256 weights) unpacked exactly into integers and per-16 scales/mins.

Every K-quant is w = d_j q - m_j over sub-blocks j, with d_j and m_j float32 products of an f16
super-block scale and a small integer sub-scale, computed here in float32 as gguf-py and ggml do,
so q * d16 + m16 reproduces their dequantization bit for bit (m16 holds -m_j: x - y == x + (-y)):
  Q2_K  (84 bytes):  16 x (4-bit scale, 4-bit min) per 16, 2-bit q, f16 d, dmin
  Q3_K  (110 bytes): 16 x 6-bit scale - 32 per 16, 3-bit signed q (2 low bits, inverted high bit), f16 d
  Q4_K  (144 bytes): f16 d, dmin, 8 x (6-bit scale, 6-bit min) per 32, 4-bit q
  Q5_K  (176 bytes): as Q4_K with a fifth bit per weight
  Q6_K  (210 bytes): 6-bit q - 32, int8 scale per 16, f16 d
Q4_K's q and per-32 scales land in the kernel's "q4" layout as they are (its 64-column groups
are the low then high nibbles of 32 bytes, as Q4_K stores them); the others in "q8".
"""

from __future__ import annotations

import torch

QK_K = 256
BLOCK_BYTES = {"Q2_K": 84, "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}


def _f16(blocks: torch.Tensor, at: int) -> torch.Tensor:
    """(N, nb, bytes) uint8 -> (N, nb, 1) float32 of the f16 at byte `at` of each block."""
    return blocks[..., at:at + 2].contiguous().view(torch.float16).float()


def _shifts(raw: torch.Tensor, shifts: list[int], mask: int) -> torch.Tensor:
    """(N, nb, G, L) uint8 -> (N, nb, G, len(shifts), L) int32: (raw >> s) & mask for each shift."""
    s = torch.tensor(shifts, dtype=torch.int32).view(len(shifts), 1)
    return (raw.to(torch.int32).unsqueeze(-2) >> s) & mask


def _scale_min_k4(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K's 12 scale bytes (N, nb, 12) -> 6-bit scales and mins (N, nb, 8) int32: bytes
    0-3 hold scales 0-3 (+ the top 2 bits of scales 4-7), 4-7 mins 0-3 (+ tops of mins 4-7),
    8-11 the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high nibble)."""
    s = scales.to(torch.int32)
    d, m, md = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = torch.cat((d & 63, (md & 15) | ((d >> 2) & 48)), dim=-1)
    mn = torch.cat((m & 63, (md >> 4) | ((m >> 2) & 48)), dim=-1)
    return sc, mn


def _per(t: torch.Tensor, n: int, width: int) -> torch.Tensor:
    """(N, nb, S) per-sub-block values -> (N, K/16): each repeated over its width / 16."""
    return t.reshape(n, -1).repeat_interleave(width // 16, dim=1)


def unpack_kquant(kind: str, raw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """raw (N, K / 256 * bytes) uint8 of one K-quant type -> q (N, K) int32, d16, m16 (N, K/16)."""
    n = raw.shape[0]
    if k % QK_K:
        raise ValueError(f"GGUF {kind} tensor with rows of {k}: K-quants need a multiple of {QK_K}")
    b = raw.reshape(n, k // QK_K, BLOCK_BYTES[kind])
    nb = b.shape[1]
    if kind in ("Q4_K", "Q5_K"):
        sc, mn = _scale_min_k4(b[..., 4:16])
        d, m = _f16(b, 0) * sc.float(), -(_f16(b, 2) * mn.float())  # (N, nb, 8): per 32
        qs_at = 16 if kind == "Q4_K" else 48
        # 4 chunks of 32 bytes: sub-block 2i is chunk i's low nibbles, 2i + 1 its high
        q = _shifts(b[..., qs_at:qs_at + 128].reshape(n, nb, 4, 32), [0, 4], 15).reshape(n, nb, 8, 32)
        if kind == "Q5_K":  # bit j of byte l: the fifth bit of element l of sub-block j
            q = q | _shifts(b[..., 16:48].reshape(n, nb, 1, 32), list(range(8)), 1).reshape(n, nb, 8, 32) << 4
        return q.reshape(n, k), _per(d, n, 32), _per(m, n, 32)
    if kind == "Q6_K":
        d = _f16(b, 208) * b[..., 192:208].contiguous().view(torch.int8).float()  # (N, nb, 16)
        # two halves of 128: low 4 bits from 64 bytes (low then high nibbles, 32 apart), high 2 bits
        # from 32 bytes (shifts 0, 2, 4, 6 for the four 32s)
        lo = _shifts(b[..., 0:128].reshape(n, nb, 2, 64), [0, 4], 15).reshape(n, nb, 8, 32)
        hi = _shifts(b[..., 128:192].reshape(n, nb, 2, 32), [0, 2, 4, 6], 3).reshape(n, nb, 8, 32)
        return ((lo | hi << 4) - 32).reshape(n, k), _per(d, n, 16), None
    if kind == "Q2_K":
        s = b[..., 0:16].to(torch.int32)
        d, m = _f16(b, 80) * (s & 15).float(), -(_f16(b, 82) * (s >> 4).float())
        q = _shifts(b[..., 16:80].reshape(n, nb, 2, 32), [0, 2, 4, 6], 3)
        return q.reshape(n, k), _per(d, n, 16), _per(m, n, 16)
    if kind == "Q3_K":
        s = b[..., 96:108]
        low = _shifts(s[..., 0:8].reshape(n, nb, 1, 8), [0, 4], 15).reshape(n, nb, 16)
        high = _shifts(s[..., 8:12].reshape(n, nb, 1, 4), [0, 2, 4, 6], 3).reshape(n, nb, 16)
        d = _f16(b, 108) * ((low | high << 4) - 32).float()
        q = _shifts(b[..., 32:96].reshape(n, nb, 2, 32), [0, 2, 4, 6], 3).reshape(n, nb, 8, 32)
        hbit = _shifts(b[..., 0:32].reshape(n, nb, 1, 32), list(range(8)), 1).reshape(n, nb, 8, 32)
        return (q - ((hbit ^ 1) << 2)).reshape(n, k), _per(d, n, 16), None
    raise ValueError(f"GGUF type {kind} is not a K-quant ({', '.join(BLOCK_BYTES)})")
