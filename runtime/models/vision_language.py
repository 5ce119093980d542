"""What every vision-language model shares: the text decoder (`language_model`, a causal LM of
runtime/models) does the forward, the logits and the KV pool; images and videos reach it as
input embeddings (runtime/multimodal) that the subclass's `encode_media` computes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ..cache.kv_pool import KVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem


class VisionLanguageModel(nn.Module):
    task = "generate"
    ignored_weights = (r"rotary_emb\.inv_freq",)
    language_model: nn.Module

    @staticmethod
    def vision_config(config: ModelConfig) -> MultimodalConfig:
        if config.multimodal is None:
            raise ValueError(f"{config.architecture}: config.json has no vision_config")
        return config.multimodal

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        return self.language_model(batch)

    def compute_logits(self, hidden: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        return self.language_model.compute_logits(hidden, batch)

    def make_kv_pool(self, dtype: torch.dtype, device: torch.device) -> KVPool:
        return self.language_model.make_kv_pool(dtype, device)

    def with_text_rows(self, item: MediaItem, rows: torch.Tensor) -> torch.Tensor:
        """(item.length, hidden): `rows` (the encoder's) where item.inputs["text_ids"] is -1,
        the token embedding of the text tokens a family's item holds elsewhere (InternVL's
        <img> </img>, Pixtral's [IMG_BREAK] [IMG_END]: processor.media_token_ids)."""
        text = item.inputs["text_ids"].to(rows.device)
        out = self.language_model.model.embed_tokens(text.clamp(min=0)).to(rows.dtype)
        out[text < 0] = rows
        return out


def rename_text_weights(weights: Iterable[tuple[str, torch.Tensor]], text_cls: type,
                        prefix: str = "language_model.") -> Iterator[tuple[str, torch.Tensor]]:
    """The text model's own `renamed_weights` applied only under `prefix` (OPT's `.fc1.` or
    `.final_layer_norm.` would also match a vision tower's names if applied to every name)."""
    renames = [(re.compile(a), b) for a, b in getattr(text_cls, "renamed_weights", ())]
    for name, t in weights:
        if name.startswith(prefix):
            inner = name.removeprefix(prefix)
            for pattern, repl in renames:
                inner = pattern.sub(repl, inner)
            name = prefix + inner
        yield name, t
