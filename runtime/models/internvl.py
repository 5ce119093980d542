"""InternVL (`InternVLForConditionalGeneration`, InternVL 2.5/3 in transformers' format): the
image processor (GotOcr2's) tiles each image into 1..max_patches tower-sized tiles on the
canvas closest to its aspect ratio, plus a thumbnail when there are several; InternViT
(layers/vision_intern.py) encodes each tile, the patch grid is pixel-shuffled (2x2 patches
into one token at ratio 0.5) and an MLP with a LayerNorm projects it into a Qwen2/Llama decoder.
A prompt's <IMG_CONTEXT> stands for one image: it becomes <img>, tiles x tokens a tile, </img>.

# differs from LLaVA: the item holds the <img> / </img> tokens around its rows (their
# embeddings, `with_text_rows`); the token count is tiles * (side * ratio)^2 + 2."""

from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig
from ..layers.norm import LayerNorm
from ..layers.vision_intern import InternVisionTower, pixel_shuffle
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED
from .llava import MultimodalProjector, text_model_class
from .vision_language import VisionLanguageModel


class InternVLProjector(MultimodalProjector):
    """LayerNorm, then LLaVA's two linears (shuffled tower width -> text width -> text width)."""

    def __init__(self, in_features: int, hidden: int, act: str) -> None:
        super().__init__(in_features, hidden, act, bias=True)
        self.layer_norm = LayerNorm(in_features, 1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.layer_norm(x))


class InternVLForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)
    media_tokens = ("<img>", "</img>")
    renamed_weights = [(r"^model\.vision_tower\.", "vision_tower."),
                       (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
                       (r"^model\.language_model\.", "language_model.model."), (r"^lm_head\.", "language_model.lm_head."),
                       (r"\.embeddings\.patch_embeddings\.projection\.", ".embeddings.projection."),
                       (r"\.attention\.projection_layer\.", ".attention.out_proj.")]

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        if not mm.downsample_ratio or len(mm.feature_layers) != 1:
            raise ValueError(f"{config.architecture}: config.json needs downsample_ratio and one vision_feature_layer")
        text_cls = text_model_class(config)
        self.packed_modules = {**getattr(text_cls, "packed_modules", {}), **QKV_PACKED}
        self.language_model = text_cls(config, max_length)
        self.vision_tower = InternVisionTower(mm.tower)
        width = int(mm.tower.hidden_size / mm.downsample_ratio**2)
        self.multi_modal_projector = InternVLProjector(width, config.hidden_size, mm.projector_act)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def tile_tokens(mm: MultimodalConfig) -> int:
        side = mm.tower.image_size // mm.tower.patch_size
        return int(side * mm.downsample_ratio) ** 2

    @staticmethod
    def image_kwargs(mm: MultimodalConfig) -> dict[str, Any]:
        return {"crop_to_patches": True}  # as InternVLProcessor asks for tiles

    @classmethod
    def num_media_tokens(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        return 2 + inputs["pixel_values"].shape[0] * cls.tile_tokens(mm)

    @staticmethod
    def media_text_ids(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor],
                       token_ids: dict[str, int]) -> torch.Tensor:
        n = InternVLForConditionalGeneration.num_media_tokens(mm, modality, inputs)
        ids = torch.full((n,), -1, dtype=torch.int64)
        ids[0], ids[-1] = token_ids["<img>"], token_ids["</img>"]
        return ids

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: InternVLForConditionalGeneration takes images only here")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) per image: <img>, each tile's shuffled and projected patches
        in tile order (the thumbnail last), </img>; all tiles in one tower call."""
        device = self.vision_tower.embeddings.projection.weight.device
        tiles = [it.inputs["pixel_values"] for it in items]
        x = self.vision_tower.features(torch.cat(tiles).to(device), self.mm.feature_layers[0])
        if self.mm.select_strategy == "default":
            x = x[:, 1:]  # without the class token
        side = int(x.shape[1] ** 0.5)
        x = pixel_shuffle(x.reshape(x.shape[0], side, side, -1), self.mm.downsample_ratio)
        x = self.multi_modal_projector(x.reshape(x.shape[0], -1, x.shape[-1]))  # (tiles, tokens, hidden)
        feats = x.split([t.shape[0] for t in tiles])
        return [self.with_text_rows(it, f.reshape(-1, f.shape[-1])) for it, f in zip(items, feats)]
