"""Bidirectional attention of a batch of whole prompts (encoders: BERT, RoBERTa), without the
pool: each request attends to its own new keys only, so the keys of this forward are all it
needs.

Requests are sorted by length and cut into groups of similar length (at most GROUP_REQS each);
each group is one padded SDPA. Padding to the whole batch's longest request instead made
attention cost as much as every matmul of MiniLM on a batch of mixed lengths.

NOTE: padded keys are masked out (a key-padding mask, broadcast over queries; none where a
group's lengths are equal); padded query rows see the real keys and are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

GROUP_REQS = 32  # requests per padded SDPA; lengths within a group are close after sorting
GROUP_TOKENS = 8192  # padded tokens per group at most (bounds its score matrix)


@dataclass(frozen=True)
class Group:
    gather: torch.Tensor  # (g * max_len,) packed token of each padded position (0 where padded)
    valid: torch.Tensor  # (n,) padded positions that hold a token, in the order of `tokens`
    tokens: torch.Tensor  # (n,) packed index of each of those tokens
    shape: tuple[int, int]  # (g, max_len)
    key_mask: torch.Tensor | None  # (g, 1, 1, max_len) bool: True for real keys; None: no padding


def make_groups(extend_lens: list[int], device: torch.device) -> list[Group]:
    """The groups of one batch whose requests own packed tokens in order (extend_lens each)."""
    starts = [0]
    for n in extend_lens:
        starts.append(starts[-1] + n)
    order = sorted(range(len(extend_lens)), key=extend_lens.__getitem__)
    groups, current = [], []
    for b in order:  # ascending length: the last request of a group is its longest
        if current and (len(current) == GROUP_REQS or (len(current) + 1) * extend_lens[b] > GROUP_TOKENS):
            groups.append(_group(current, starts, extend_lens, device))
            current = []
        current.append(b)
    groups.append(_group(current, starts, extend_lens, device))
    return groups


def _group(reqs: list[int], starts: list[int], lens: list[int], device: torch.device) -> Group:
    ls = torch.tensor([lens[b] for b in reqs], device=device)
    max_len = int(ls.max())
    offs = torch.arange(max_len, device=device)
    real = offs[None, :] < ls[:, None]  # (g, max_len)
    first = torch.tensor([starts[b] for b in reqs], device=device)
    gather = torch.where(real, first[:, None] + offs[None, :], 0).flatten()
    valid = real.flatten().nonzero()[:, 0]
    key_mask = None if bool(real.all()) else real[:, None, None, :]
    return Group(gather, valid, gather.index_select(0, valid), (len(reqs), max_len), key_mask)


def _padded(x: torch.Tensor, g: Group) -> torch.Tensor:
    """(tokens, h, d) -> (g, h, max_len, d)."""
    return x.index_select(0, g.gather).view(*g.shape, *x.shape[1:]).transpose(1, 2)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: list[Group],
                      scale: float, out_dim: int) -> torch.Tensor:
    """q (tokens, heads, d), k / v (tokens, kv_heads, d) of whole prompts -> (tokens, heads, out_dim)."""
    out = q.new_empty(q.shape[0], q.shape[1], out_dim)
    for g in groups:
        o = F.scaled_dot_product_attention(_padded(q, g), _padded(k, g), _padded(v, g), attn_mask=g.key_mask,
                                           scale=scale, enable_gqa=True)
        o = o.to(q.dtype).transpose(1, 2).flatten(0, 1)  # (g * max_len, h, dv)
        out.index_copy_(0, g.tokens, o.index_select(0, g.valid))
    return out
