"""The sampler's greedy path: numpy's argmax on the CPU must pick what torch.argmax picks."""

from __future__ import annotations

import torch
from sgl.runtime.sampling.sampler import greedy_ids


def test_greedy_ids_match_torch_argmax_on_ties_nan_and_inf() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 1000, generator=g)
    logits[1, 10] = logits[1, 700] = 50.0  # a tie: the first wins
    logits[2, 300] = float("nan")  # NaN counts as the maximum, the first one
    logits[2, 900] = float("nan")
    logits[3] = float("-inf")  # nothing allowed: index 0
    logits[4, 999] = float("inf")
    logits[5] = 7.0  # all equal
    ids = greedy_ids(logits)
    assert ids.dtype == torch.int64 and ids.shape == (8,)
    assert torch.equal(ids, logits.argmax(-1))
    assert ids[1:4].tolist() == [10, 300, 0]


def test_greedy_ids_fall_back_to_torch_where_numpy_cannot_read() -> None:
    logits = torch.randn(4, 64, 3)[:, :, 0]  # rows strided
    assert torch.equal(greedy_ids(logits), logits.argmax(-1))
    half = torch.randn(3, 50).bfloat16()
    assert torch.equal(greedy_ids(half), half.argmax(-1))
    assert greedy_ids(torch.empty(0, 10)).shape == (0,)
