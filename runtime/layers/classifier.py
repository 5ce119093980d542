"""Classifier heads over a pooled vector (classification, reward and cross-encoder models), and
the activation that turns their logits into the scores a caller gets."""

from __future__ import annotations

import torch
from torch import nn

from .linear import Linear

ACTIVATIONS = ("sigmoid", "softmax", "none")


class DenseTanhHead(nn.Module):
    """BERT's pooler + classifier and RoBERTa's classification head: out_proj(tanh(dense(x)))
    (the checkpoint's dropout is a no-op at inference)."""

    def __init__(self, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.dense = Linear(hidden, hidden, bias=True)
        self.out_proj = Linear(hidden, num_labels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, hidden) -> (batch, num_labels) logits."""
        return self.out_proj(torch.tanh(self.dense(x)))


class ValueHead(nn.Module):
    """Qwen2.5-Math-RM's reward head: Linear(hidden, hidden) -> ReLU -> Linear(hidden, 1), its
    checkpoint names `score.0` and `score.2` (an nn.Sequential there)."""

    def __init__(self, hidden: int, num_labels: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleDict({"0": Linear(hidden, hidden, bias=True), "2": Linear(hidden, num_labels, bias=True)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers["2"](torch.relu(self.layers["0"](x)))


def score_activation(configured: str | None, num_labels: int, single_label: str) -> str:
    """The activation of a head with `num_labels` outputs: the checkpoint's own when it names one
    (ModelConfig.score_activation), else `single_label` for one output (sigmoid: a cross-encoder's
    relevance, as sentence-transformers' CrossEncoder gives it; none: a reward), else softmax."""
    if configured is not None:
        return configured
    return single_label if num_labels == 1 else "softmax"


def apply_activation(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """(batch, labels) float32 logits -> scores."""
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    if activation == "softmax":
        return torch.softmax(logits, dim=-1)
    assert activation == "none", activation
    return logits
