"""Aria (`AriaForConditionalGeneration`): the image processor resizes an image (or each crop of
it) to a max_image_size longest edge and pads it to that square with a pixel mask; Idefics3's
tower (layers/vision_siglip.py) encodes the real patches (positions fitted to them, padded
patches masked as keys); learned queries cross-attend to them (layers/vision_aria.py: 128 for
a 490 px crop, 256 for 980 px in real checkpoints); the text model is Aria's MoE decoder
(moe_llama.AriaTextForCausalLM).

# differs from LLaVA: an image's token count is crops x the projector's queries for the
# crop's patch count, not its patches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ..config import ModelConfig
from ..layers.vision_aria import AriaProjector
from ..layers.vision_siglip import Idefics3VisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED
from .llava import LlavaForConditionalGeneration, text_model_class
from .vision_language import VisionLanguageModel


class AriaForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)
    features = ("MoE",)  # docs/models.md's layers column

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        if not mm.query_counts or len(mm.feature_layers) != 1:
            raise ValueError(f"{config.architecture}: config.json needs projector_patch_to_query_dict and one "
                             "vision_feature_layer")
        text_cls = text_model_class(config)
        self.packed_modules = {**getattr(text_cls, "packed_modules", {}), **QKV_PACKED}
        self.renamed_weights = [*LlavaForConditionalGeneration.renamed_weights, *getattr(text_cls, "renamed_weights", []),
                                *[(rf"\.cross_attn\.{x}_proj\.", f".cross_attn.{name}_proj.")
                                  for x, name in (("q", "query"), ("k", "key"), ("v", "value"))]]
        self.language_model = text_cls(config, max_length)
        self.vision_tower = Idefics3VisionTower(mm.tower)
        self.multi_modal_projector = AriaProjector(mm.tower.hidden_size, mm.tower.num_heads, config.hidden_size,
                                                   dict(mm.query_counts))

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        return self.language_model.transform_weights(weights)  # the text model's stacked experts

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def image_inputs(image_processor: Any, image: Any, count: int) -> dict[str, torch.Tensor]:
        """pixel_values (crops, 3, size, size), pixel_mask (crops, size, size), processed with
        AriaProcessor's own image arguments (its max_image_size and split_image win over the
        image processor's saved ones)."""
        from transformers.models.aria.processing_aria import AriaProcessor

        out = image_processor(images=[image], return_tensors="pt", **AriaProcessor.images_kwargs)
        return {"pixel_values": out["pixel_values"], "pixel_mask": out["pixel_mask"]}

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        """Crops x the projector's queries for a crop's patch count."""
        crops, _, h, w = inputs["pixel_values"].shape
        patches = (h // mm.tower.patch_size) * (w // mm.tower.patch_size)
        queries = dict(mm.query_counts)
        if patches not in queries:
            raise ValueError(f"image_data: crops of {h}x{w} px ({patches} patches) have no entry in the config's "
                             f"projector_patch_to_query_dict {queries}")
        return crops * queries[patches]

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: AriaForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) per image: each crop's queries, crops in order; all crops in
        one tower call."""
        device = self.vision_tower.embeddings.patch_embedding.weight.device
        pixels = torch.cat([it.inputs["pixel_values"] for it in items]).to(device)
        p = self.mm.tower.patch_size
        mask = torch.cat([it.inputs["pixel_mask"] for it in items]).to(device).bool()  # (crops, size, size)
        patch_mask = mask.unfold(1, p, p).unfold(2, p, p).flatten(3).any(-1)  # (crops, hp, wp): any real pixel
        feats = self.vision_tower.hidden_states(pixels, self.mm.feature_layers, patch_mask)[0]
        rows = self.multi_modal_projector(feats, patch_mask.flatten(1))  # (crops, queries, text hidden)
        return [r.reshape(-1, r.shape[-1]) for r in rows.split([it.inputs["pixel_values"].shape[0] for it in items])]
