"""RoBERTa and XLM-RoBERTa (BGE-M3's dense side, bge-reranker): BERT (bert.py) whose learned
positions start after the padding id (transformers counts them from padding_idx + 1 for a
sequence without padding), so the longest input is max_position_embeddings - padding_idx - 1.
Their classifier head is already named dense / out_proj in the checkpoint."""

from __future__ import annotations

from ..config import ModelConfig
from ..layers.classifier import DenseTanhHead, score_activation
from ..layers.pooler import Pooler
from .bert import ENCODER_RENAMES, BertModel


class RobertaModel(BertModel):
    @staticmethod
    def position_offset(config: ModelConfig) -> int:
        return int(config.hf.pad_token_id) + 1


class XLMRobertaModel(RobertaModel):
    """XLM-RoBERTa: RoBERTa's layout with a larger vocabulary."""


class RobertaForSequenceClassification(RobertaModel):
    task = "classify"
    ignored_weights = (r"embeddings\.position_ids$",)
    renamed_weights = ENCODER_RENAMES

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        self.pooler = Pooler("cls", normalize=False)  # the <s> token
        self.labels = config.labels
        self.classifier = DenseTanhHead(config.hidden_size, len(config.labels))
        self.activation = score_activation(config.score_activation, len(config.labels), "sigmoid")


class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    pass
