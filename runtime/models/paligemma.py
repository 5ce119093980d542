"""PaliGemma (`PaliGemmaForConditionalGeneration`, 1 and 2): a SigLIP tower's last hidden
state, one linear layer into the text width, and a Gemma (1) or Gemma 2 (2) decoder.

# differs from Gemma 3 (gemma3_vl.py): one token per patch, a linear projector, positions
# counted from 1, and prefix-LM attention: the whole prompt (images + text) attends
# bidirectionally, generated tokens causally (`noncausal_spans`). The prompt is taken as given:
# the engine does not add what PaliGemmaProcessor adds to raw text (the images' <image> tokens
# first, <bos> after them, "\n" at the end); write them in the prompt.
# NOTE: every prompt token's KV depends on the whole prompt, so a cached prefix is reused only up
# to the prompt's start (none); a prompt without images is causal (as given without token types)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..forward_batch import ForwardBatch
from ..layers.linear import Linear
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .gemma3_vl import Gemma3ForConditionalGeneration


class PaliGemmaMultiModalProjector(nn.Module):
    def __init__(self, vision_hidden: int, text_hidden: int) -> None:
        super().__init__()
        self.linear = Linear(vision_hidden, text_hidden, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class PaliGemmaForConditionalGeneration(Gemma3ForConditionalGeneration):
    image_wrap = None  # the prompt's <image> token stands for the image itself

    @staticmethod
    def make_projector(mm: MultimodalConfig, text_hidden: int) -> nn.Module:
        return PaliGemmaMultiModalProjector(mm.tower.hidden_size, text_hidden)

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        return mm.tower.num_patches

    @staticmethod
    def noncausal_spans(mm: MultimodalConfig, length: int, items: list[MediaItem]) -> list[tuple[int, int]]:
        """The whole prompt: transformers' prefix (token_type_ids 0)."""
        return [(0, length)]

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        return self.language_model(dataclasses.replace(batch, positions=batch.positions + 1))  # 1-based positions
