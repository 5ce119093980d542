"""LLaVA-NeXT-Video (`LlavaNextVideoForConditionalGeneration`): LLaVA-NeXT's anyres images, and
videos as frames through the same tower, each frame's patch grid pooled with
`spatial_pool_stride` (average or max, before the projector), frame after frame, no newline.

# differs from LLaVA-NeXT: video (the pooling)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..config import ModelConfig
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llava_next import LlavaNextForConditionalGeneration


def clip_frames(frames: np.ndarray, size: int, mean: list[float], std: list[float], scale: float) -> torch.Tensor:
    """(frames, h, w, 3) uint8 -> (frames, 3, size, size): shortest edge resized to `size`
    (PIL bicubic), centre crop, rescale, normalize (the CLIP rule LLaVA's video processors
    follow; theirs need torchvision)."""
    h, w = frames.shape[1:3]
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if h <= w else (new_long, size)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = np.stack([np.asarray(Image.fromarray(f).resize((new_w, new_h), Image.BICUBIC), np.float32)
                  [top : top + size, left : left + size] for f in frames])
    x = (x * np.float32(scale) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class LlavaNextVideoForConditionalGeneration(LlavaNextForConditionalGeneration):
    modalities = ("image", "video")

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        if self.mm.pool_mode not in ("average", "max"):
            raise ValueError(f"spatial_pool_mode={self.mm.pool_mode!r}: average and max are supported")

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor, frames: np.ndarray, fps: float | None) -> dict:
        ip = image_processor
        pixels = clip_frames(frames, mm.tower.image_size, ip.image_mean, ip.image_std, ip.rescale_factor)
        return {"pixel_values_videos": pixels[None]}  # (1, frames, 3, size, size)

    @classmethod
    def num_media_tokens(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        if modality == "video":
            side = mm.tower.image_size // mm.tower.patch_size
            return inputs["pixel_values_videos"].shape[1] * (side // mm.pool_stride) ** 2
        return super().num_media_tokens(mm, modality, inputs)

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        images = [it for it in items if it.modality == "image"]
        rows = dict(zip(map(id, images), super().encode_media(images))) if images else {}
        side = self.mm.tower.image_size // self.mm.tower.patch_size
        pool = F.avg_pool2d if self.mm.pool_mode == "average" else F.max_pool2d
        for it in items:
            if it.modality != "video":
                continue
            f = self.selected_features(it.inputs["pixel_values_videos"][0])  # (frames, side^2, tower hidden)
            grid = f.view(f.shape[0], side, side, -1).permute(0, 3, 1, 2)
            pooled = pool(grid, self.mm.pool_stride, self.mm.pool_stride).flatten(2).transpose(1, 2)
            rows[id(it)] = self.multi_modal_projector(pooled).reshape(-1, self.config.hidden_size)
        return [rows[id(it)] for it in items]
