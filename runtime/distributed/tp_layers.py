"""The forwards a tensor-parallel rank needs that differ from the plain layers: a row-parallel
linear (partial product, all-reduce, then the residual), a tensor-parallel MoE block (its
experts' partial sums, all-reduced once), a vocab-parallel embedding (own rows, zeros
elsewhere, all-reduce) and a vocab-parallel LM head (own logits, all-gather).

`tp_transform.apply_tp` gives a built module one of these classes (it keeps its parameters and
names, so checkpoints load unchanged) and a `tp_group`; model files never see them."""

from __future__ import annotations

from typing import Any

import torch

from ..layers.activation import residual_add
from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.linear import Linear
from ..layers.moe import SparseMoE


class RowParallelLinear(Linear):
    """Input features split across ranks: each rank multiplies its slice, the partial products
    are summed (all-reduce); the bias lives on rank 0 only (zeros elsewhere), so it is added once.
    NOTE: the residual is added after the sum, not inside the product (it would count tp times)."""

    tp_group: Any = None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        out = self.tp_group.all_reduce(super().forward(x).contiguous())  # (..., out_features)
        return out if residual is None else residual_add(residual, out)


class TPSparseMoE(SparseMoE):
    """Every expert (and the shared one) holds 1/tp of its intermediate features: this rank's
    routed + shared partial sum (float32), summed over ranks in one all-reduce, then the
    residual and the one rounding. The router is replicated: every rank picks the same experts."""

    tp_group: Any = None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        out = self.tp_group.all_reduce(self.combine(x.reshape(-1, shape[-1])).contiguous())
        return self.finish(out, residual, x.dtype, shape)


class VocabParallelEmbedding(VocabEmbedding):
    """Rows [vocab_start, vocab_start + rows_valid) of the table on this rank (padded to the same
    count on every rank); an id outside them gives zeros here, and the sum over ranks is its row."""

    tp_group: Any = None
    vocab_start = 0
    rows_valid = 0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.vocab_start
        outside = (local < 0) | (local >= self.rows_valid)
        x = super().forward(local.masked_fill(outside, 0))  # (tokens, hidden), scaled
        x = x.masked_fill(outside.unsqueeze(-1), 0)
        return self.tp_group.all_reduce(x.contiguous())


class VocabParallelLMHead(LMHead):
    """Logits of this rank's vocab rows (padded), gathered rank after rank: (rows, vocab)."""

    tp_group: Any = None

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        local = super().forward(x, out_dtype)  # (rows, padded vocab / tp)
        return self.tp_group.all_gather_last(local)[..., : self.vocab_size]
