"""Poolers: one vector per request from the hidden states of its tokens (embedding models),
optionally through a classifier (reward and classification models)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..forward_batch import ForwardBatch

POOLINGS = ("last", "cls", "mean")


@dataclass(frozen=True)
class Pooler:
    """kind: last (the last token; causal embedders), cls (the first token; BERT), mean (all
    tokens). normalize: L2-normalize the pooled vector. NOTE: cls and mean read every token of a
    request, so its whole prompt must be computed in one forward (no cached prefix, no chunks:
    `needs_all_tokens`)."""

    kind: str = "last"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.kind not in POOLINGS:
            raise ValueError(f"Pooler.kind={self.kind!r}: use one of {POOLINGS}")

    @property
    def needs_all_tokens(self) -> bool:
        return self.kind != "last"

    def __call__(self, hidden: torch.Tensor, batch: ForwardBatch, reqs: list[int]) -> torch.Tensor:
        """hidden (tokens, hidden) -> (len(reqs), hidden) float32 for the batch's requests `reqs`,
        not normalized."""
        starts = [0]
        for n in batch.extend_lens:
            starts.append(starts[-1] + n)
        rows = []
        for b in reqs:
            lo, hi = starts[b], starts[b + 1]
            h = hidden[hi - 1] if self.kind == "last" else hidden[lo] if self.kind == "cls" else hidden[lo:hi].float().mean(0)
            rows.append(h.float())
        return torch.stack(rows)


def finish_vector(vector: torch.Tensor, normalize: bool, dimensions: int | None) -> torch.Tensor:
    """A request's pooled vector (dim,) as it is returned: its first `dimensions` entries
    (Matryoshka truncation), then L2-normalized when asked."""
    if dimensions is not None:
        vector = vector[:dimensions]
    return F.normalize(vector, dim=-1) if normalize else vector
