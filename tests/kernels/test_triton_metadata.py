"""The Triton kernels' per-step metadata: built in one copy, and a padded decode batch gives
the real rows the same outputs as the unpadded one (what replaying a CUDA graph relies on)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from sgl.kernels.triton.decode_attention import decode_attention  # noqa: E402
from sgl.kernels.triton.metadata import DecodeMetadata, ExtendMetadata  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_extend_metadata_packs_query_starts() -> None:
    meta = ExtendMetadata.build([3, 0, 7], [0, 12, 5], [4, 1, 9], DEVICE)
    assert meta.q_start.tolist() == [0, 4, 5] and meta.max_extend == 9
    assert meta.req_rows.dtype == torch.int64 and meta.req_rows.device.type == torch.device(DEVICE).type
    with pytest.raises(ValueError, match="extend_lens"):
        ExtendMetadata.build([1], [0], [0], DEVICE)


def test_padded_decode_matches_unpadded() -> None:
    g = torch.Generator().manual_seed(0)
    k = torch.randn(64, 2, 64, generator=g).to(DEVICE)
    k[0] = 0
    v = torch.randn(64, 2, 64, generator=g).to(DEVICE)
    table = torch.zeros(4, 32, dtype=torch.int64, device=DEVICE)
    table[1, :20] = torch.arange(1, 21)
    table[2, :7] = torch.arange(30, 37)
    q = torch.randn(4, 8, 64, generator=g).to(DEVICE)
    plain = DecodeMetadata.build([1, 2], [20, 7], DEVICE)
    padded = DecodeMetadata.build([1, 2], [20, 7], DEVICE, pad_to=4)
    assert padded.seq_lens.tolist() == [20, 7, 1, 1] and padded.batch == 2
    out = decode_attention(q[:2], k, v, table, plain.req_rows, plain.seq_lens, 0.125, num_splits=2)
    out_padded = decode_attention(q, k, v, table, padded.req_rows, padded.seq_lens, 0.125, num_splits=2)
    torch.testing.assert_close(out_padded[:2], out)
    captured = DecodeMetadata.build([0, 0], [1, 1], DEVICE, pad_to=4)
    padded.copy_into(captured)
    assert captured.req_rows.tolist() == [1, 2, 0, 0]
    with pytest.raises(ValueError, match="pad_to"):
        DecodeMetadata.build([1, 2, 3], [1, 1, 1], DEVICE, pad_to=2)
