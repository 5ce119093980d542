"""Grouped bidirectional attention (encoders) against one SDPA per request: groups split by
count and by padded tokens, with and without padding, GQA."""

from __future__ import annotations

import random

import torch
from sgl.runtime.layers.encoder_attention import GROUP_REQS, grouped_attention, make_groups
from torch.nn import functional as F


def test_grouped_attention_matches_per_request():
    rng = random.Random(0)
    lens = [rng.choice([1, 3, 7, 20]) for _ in range(GROUP_REQS + 9)] + [5] * 4 + [300] * 30
    rng.shuffle(lens)
    groups = make_groups(lens, torch.device("cpu"))
    assert len(groups) >= 3 and any(g.key_mask is None for g in groups)
    torch.manual_seed(0)
    n = sum(lens)
    q, k, v = torch.randn(n, 4, 16), torch.randn(n, 2, 16), torch.randn(n, 2, 16)
    got = grouped_attention(q, k, v, groups, 0.25, 16)
    start = 0
    for length in lens:
        s = slice(start, start + length)
        want = F.scaled_dot_product_attention(q[s].transpose(0, 1), k[s].transpose(0, 1), v[s].transpose(0, 1),
                                              scale=0.25, enable_gqa=True).transpose(0, 1)
        torch.testing.assert_close(got[s], want, atol=1e-5, rtol=0)
        start += length
