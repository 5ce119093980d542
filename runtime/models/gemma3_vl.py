"""Gemma 3 (`Gemma3ForConditionalGeneration`): a SigLIP tower, its last hidden state average-
pooled to `mm_tokens_per_image` tokens (256 in real checkpoints), Gemma's RMSNorm and a matrix
into the text width, and the Gemma 3 text decoder (runtime/models/gemma.py).

# differs from LLaVA: a prompt holds <start_of_image> for an image, which becomes
# "\\n\\n<start_of_image>" + the image's tokens + "<end_of_image>\\n\\n" (Gemma3Processor's
# full_image_sequence); an image's tokens attend to each other bidirectionally inside the causal
# LM (`noncausal_spans`: the engine keeps each span in one forward, see multimodal/items.py)."""

from __future__ import annotations

import json
import os

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..layers.norm import RMSNorm
from ..layers.vision_siglip import SiglipVisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED
from .llava import LlavaForConditionalGeneration, text_model_class
from .vision_language import VisionLanguageModel


class Gemma3MultiModalProjector(nn.Module):
    def __init__(self, mm: MultimodalConfig, text_hidden: int) -> None:
        super().__init__()
        t = mm.tower
        self.side = t.image_size // t.patch_size  # patches per side
        per_side = int(round(mm.tokens_per_image**0.5))
        if per_side * per_side != mm.tokens_per_image or self.side % per_side:
            raise ValueError(f"mm_tokens_per_image={mm.tokens_per_image}: must be a square whose side divides the "
                             f"tower's {self.side} patches per side")
        self.kernel = self.side // per_side
        self.mm_input_projection_weight = nn.Parameter(torch.empty(t.hidden_size, text_hidden), requires_grad=False)
        self.mm_soft_emb_norm = RMSNorm(t.hidden_size, t.norm_eps, offset=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(images, patches, vision hidden) -> (images, tokens_per_image, text hidden)."""
        b, _, h = x.shape
        grid = x.transpose(1, 2).reshape(b, h, self.side, self.side)
        pooled = F.avg_pool2d(grid, self.kernel).flatten(2).transpose(1, 2)  # (images, tokens, vision hidden)
        return self.mm_soft_emb_norm(pooled) @ self.mm_input_projection_weight.to(pooled.dtype)


class Gemma3ForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)
    ignored_weights = LlavaForConditionalGeneration.ignored_weights

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        text_cls = text_model_class(config)
        self.packed_modules = {**getattr(text_cls, "packed_modules", {}), **QKV_PACKED}
        # the parts' prefixes, then the text family's own names (Gemma 2/3's four norms)
        self.renamed_weights = [*LlavaForConditionalGeneration.renamed_weights,
                                *getattr(text_cls, "renamed_weights", [])]
        self.language_model = text_cls(config, max_length)
        self.vision_tower = SiglipVisionTower(mm.tower)
        self.multi_modal_projector = self.make_projector(mm, config.hidden_size)

    @staticmethod
    def make_projector(mm: MultimodalConfig, text_hidden: int) -> nn.Module:
        return Gemma3MultiModalProjector(mm, text_hidden)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def image_wrap(mm: MultimodalConfig, folder: str) -> tuple[list[int], list[int]]:
        """The ids around an image's tokens: "\\n\\n" <start_of_image> ... <end_of_image> "\\n\\n"."""
        from transformers import AutoTokenizer

        with open(os.path.join(folder, "config.json")) as f:
            eoi = json.load(f).get("eoi_token_index")
        if eoi is None or mm.prompt_image_token_id is None:
            raise ValueError(f"{folder}/config.json: Gemma 3 needs boi_token_index and eoi_token_index")
        newlines = AutoTokenizer.from_pretrained(folder).encode("\n\n", add_special_tokens=False)
        return [*newlines, mm.prompt_image_token_id], [eoi, *newlines]

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        if inputs["pixel_values"].shape[0] != 1:
            raise ValueError("image_data: pan-and-scan crops are not supported; set do_pan_and_scan=false in the "
                             "folder's preprocessor_config.json")
        return mm.tokens_per_image

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: this model does not take videos")

    @staticmethod
    def noncausal_spans(mm: MultimodalConfig, length: int, items: list[MediaItem]) -> list[tuple[int, int]]:
        """Each image's tokens (transformers' token_type_ids blocks)."""
        return [(it.offset, it.end) for it in items]

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) decoder-input rows per image, all images in one tower call."""
        device = self.vision_tower.embeddings.patch_embedding.weight.device
        pixels = torch.cat([it.inputs["pixel_values"] for it in items]).to(device)
        return list(self.multi_modal_projector(self.vision_tower(pixels)).unbind(0))
