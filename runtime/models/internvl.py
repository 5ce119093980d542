"""InternVL (`InternVLForConditionalGeneration`, InternVL 2.5/3 in transformers' format): the
image processor (GotOcr2's) tiles each image into 1..max_patches tower-sized tiles on the
canvas closest to its aspect ratio, plus a thumbnail when there are several; InternViT
(layers/vision_intern.py) encodes each tile, the patch grid is pixel-shuffled (2x2 patches
into one token at ratio 0.5) and an MLP with a LayerNorm projects it into a Qwen2/Llama decoder.
A prompt's <IMG_CONTEXT> stands for one image: it becomes <img>, tiles x tokens a tile, </img>.
A prompt's <video> (a tokenizer token; the config names none) stands for one video: its frames
as InternVLProcessor writes them, "Frame1: <img>...</img>\\nFrame2: <img>...</img>", each frame
one unsplit tile of context tokens.

# differs from LLaVA: the item holds the <img> / </img> tokens around its rows (their
# embeddings, `with_text_rows`); the token count is tiles * (side * ratio)^2 + 2."""

from __future__ import annotations

from typing import Any

import numpy as np
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
    modalities = ("image", "video")
    media_tokens = ("<img>", "</img>")
    prompt_video_token = "<video>"
    text_joins_prompt = ("video",)  # "Frame1: " is tokenized with the prompt's text before <video>
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
    def sample_frames(total: int, num_frames: int) -> np.ndarray:
        """InternVLVideoProcessor.sample_frames (initial_shift=True): the clip cut into
        num_frames equal spans, a frame from the middle of each (every frame when num_frames
        >= total). -> (frames,) indices."""
        if num_frames >= total:
            return np.arange(total)
        step = total / num_frames
        return torch.arange(step / 2, total, step).int().numpy()  # torch's float arange, as transformers

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: Any, frames: np.ndarray,
                     fps: float | None) -> dict[str, torch.Tensor]:
        """pixel_values (frames, 3, tile, tile): each frame one tile, not split (the image
        processor without crop_to_patches: resized to the tile size, rescaled, normalized;
        InternVLVideoProcessor does the same with torchvision, which sgl does not use)."""
        from PIL import Image

        out = image_processor(images=[Image.fromarray(f) for f in frames], crop_to_patches=False, return_tensors="pt")
        return {"pixel_values": out["pixel_values"]}

    @staticmethod
    def split_video(mm: MultimodalConfig, inputs: dict[str, torch.Tensor]) -> list[str | dict[str, torch.Tensor]]:
        """The video's prompt parts, as InternVLProcessor.replace_video_token writes them:
        "Frame{i}: " then the frame as a one-tile image item (<img> context </img>), the
        frames joined by "\\n"."""
        parts: list[str | dict[str, torch.Tensor]] = []
        for i, frame in enumerate(inputs["pixel_values"]):
            parts += [("\n" if i else "") + f"Frame{i + 1}: ", {"pixel_values": frame[None]}]
        return parts

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) per image or video frame: <img>, each tile's shuffled and
        projected patches in tile order (the thumbnail last), </img>; all tiles in one tower call."""
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
