"""The Pixtral tower's families: Mistral 3.1 (`Mistral3ForConditionalGeneration`, Mistral-Small
3.1: RMSNorm, a patch merger of merge x merge patches, a two-layer projector) and LLaVA with a
Pixtral tower (`LlavaForConditionalGeneration` whose vision_config is pixtral, e.g.
pixtral-12b; vLLM's `PixtralForConditionalGeneration` name serves the same HF-format folders).

Images keep their size (the processor fits the longest edge and rounds both sides to whole
tokens: patch_size * merge pixels). Each [IMG] placeholder becomes rows x (columns + 1) tokens:
a row of image tokens then [IMG_BREAK], the last [IMG_BREAK] being [IMG_END].

# differs from LLaVA: the item holds the break/end tokens among its rows (their embeddings,
# `with_text_rows`); the tower takes each image at its own size (layers/vision_pixtral.py)."""

from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig
from ..layers.linear import Linear
from ..layers.norm import RMSNorm
from ..layers.vision_pixtral import PixtralVisionTower, merge_patches
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import GATE_UP_PACKED, QKV_PACKED
from .llava import LlavaForConditionalGeneration, MultimodalProjector, text_model_class
from .vision_language import VisionLanguageModel


class PixtralVisionLanguage(VisionLanguageModel):
    """What both families share: the tower, the token layout, the processor's patch size."""

    modalities = ("image",)
    media_tokens = ("[IMG_BREAK]", "[IMG_END]")
    renamed_weights = LlavaForConditionalGeneration.renamed_weights

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        if mm.tower.kind != "pixtral" or len(mm.feature_layers) != 1:
            raise ValueError(f"{config.architecture}: needs a pixtral vision_config and one vision_feature_layer")
        text_cls = text_model_class(config)
        self.packed_modules = {**getattr(text_cls, "packed_modules", {}), **QKV_PACKED, **GATE_UP_PACKED}
        self.language_model = text_cls(config, max_length)
        self.vision_tower = PixtralVisionTower(mm.tower)

    @staticmethod
    def token_side(mm: MultimodalConfig) -> int:
        """Pixels a side of one token: patch_size * merge (Mistral3's spatial_merge_size; LLaVA: 1)."""
        return mm.tower.patch_size * mm.tower.merge_size

    @classmethod
    def image_kwargs(cls, mm: MultimodalConfig) -> dict[str, Any]:
        side = cls.token_side(mm)  # as PixtralProcessor asks: sides rounded to whole tokens
        return {"patch_size": {"height": side, "width": side}}

    @classmethod
    def grid(cls, mm: MultimodalConfig, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
        """(rows, columns) of an image's tokens."""
        h, w = (int(v) for v in inputs["image_sizes"].reshape(-1))
        return h // cls.token_side(mm), w // cls.token_side(mm)

    @classmethod
    def num_media_tokens(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        rows, cols = cls.grid(mm, inputs)
        return rows * (cols + 1)

    @classmethod
    def media_text_ids(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor],
                       token_ids: dict[str, int]) -> torch.Tensor:
        rows, cols = cls.grid(mm, inputs)
        ids = torch.full((rows, cols + 1), -1, dtype=torch.int64)
        ids[:, -1] = token_ids["[IMG_BREAK]"]
        ids[-1, -1] = token_ids["[IMG_END]"]
        return ids.reshape(-1)

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: Pixtral-tower models do not take videos")

    def project(self, patches: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """One image's (rows * cols, tower hidden) patch features -> its (tokens, text hidden) rows."""
        raise NotImplementedError

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) per image: its token rows, each row closed by [IMG_BREAK]
        ([IMG_END] last); all images in one tower call, each at its own size."""
        side = self.token_side(self.mm)
        grids = [self.grid(self.mm, it.inputs) for it in items]
        images = [it.inputs["pixel_values"][0, :, : r * side, : c * side] for it, (r, c) in zip(items, grids)]
        feats = self.vision_tower.features(images, self.mm.feature_layers[0])
        p = self.mm.tower.patch_size
        return [self.with_text_rows(it, self.project(f, r * side // p, c * side // p))
                for it, f, (r, c) in zip(items, feats, grids)]


class Mistral3Projector(MultimodalProjector):
    """RMSNorm, the patch merger (merge^2 patches -> one row, no bias), LLaVA's two linears."""

    def __init__(self, config: ModelConfig, mm: MultimodalConfig) -> None:
        width, merge = mm.tower.hidden_size, mm.tower.merge_size
        super().__init__(width, config.hidden_size, mm.projector_act, mm.projector_bias)
        self.norm = RMSNorm(width, config.norm_eps)
        self.patch_merger = torch.nn.Module()
        self.patch_merger.merging_layer = Linear(width * merge * merge, width, bias=False)
        self.merge = merge

    def forward(self, x: torch.Tensor, rows: int = 0, cols: int = 0) -> torch.Tensor:
        x = merge_patches(self.norm(x), rows, cols, self.merge)
        return super().forward(self.patch_merger.merging_layer(x))


class Mistral3ForConditionalGeneration(PixtralVisionLanguage):
    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        self.multi_modal_projector = Mistral3Projector(config, self.mm)

    def project(self, patches: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        return self.multi_modal_projector(patches, rows, cols)


class LlavaPixtralForConditionalGeneration(PixtralVisionLanguage):
    """LlavaForConditionalGeneration with a pixtral vision_config (models.TOWER_VARIANTS)."""

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        if self.mm.select_strategy != "full":
            raise ValueError(f"{config.architecture}: a Pixtral tower has no class token to drop; set "
                             "vision_feature_select_strategy to full")
        self.multi_modal_projector = MultimodalProjector(self.mm.tower.hidden_size, config.hidden_size,
                                                         self.mm.projector_act, self.mm.projector_bias)

    def project(self, patches: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        return self.multi_modal_projector(patches)
