"""LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`): LLaVA-NeXT's anyres images, with
"anyres_max_N" shrinking a large unpadded grid (bilinear) to about N tiles' patches; the
images of a multi-image prompt as one tile each (base patches + one newline); video frames
each one tile, their patch grids pooled 2x (bilinear, ceil), one newline after the video.

# differs from LLaVA-NeXT: the shrink, the multi-image rule, video."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llava_next import LlavaNextForConditionalGeneration


def _pooled(mm: MultimodalConfig) -> int:
    return math.ceil(mm.tower.image_size // mm.tower.patch_size / 2)


class LlavaOnevisionForConditionalGeneration(LlavaNextForConditionalGeneration):
    modalities = ("image", "video")

    @staticmethod
    def image_inputs(image_processor, image: Image.Image, count: int) -> dict:
        """The processor's rule: one image of a prompt anyres-tiled; the images of a prompt with
        several each one resized tile (the processor decides this from how many it is given)."""
        images = [[image, image]] if count > 1 else [image]  # a pair: the processor's multi-image path
        out = image_processor(images=images, return_tensors="pt")
        if count > 1:
            out = {"pixel_values": out["pixel_values"][:1, :1], "image_sizes": out["image_sizes"][:1]}
        return dict(out)

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor, frames: np.ndarray, fps: float | None) -> dict:
        """(frames, h, w, 3) uint8 -> pixel_values_videos (1, frames, 3, size, size): each frame
        resized to the tower's square (PIL bicubic) and normalized, as OneVision's video
        processor does (that one needs torchvision)."""
        size = mm.tower.image_size
        mean = np.asarray(image_processor.image_mean, np.float32)
        std = np.asarray(image_processor.image_std, np.float32)
        x = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC), np.float32) for f in frames])
        x = ((x * np.float32(image_processor.rescale_factor) - mean) / std).transpose(0, 3, 1, 2)
        return {"pixel_values_videos": torch.from_numpy(np.ascontiguousarray(x))[None]}

    @classmethod
    def num_media_tokens(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        if modality == "video":
            return inputs["pixel_values_videos"].shape[1] * _pooled(mm) ** 2 + 1
        return super().num_media_tokens(mm, modality, inputs)

    @staticmethod
    def packed_shape(mm: MultimodalConfig, rows: int, cols: int) -> tuple[int, int]:
        side = mm.tower.image_size // mm.tower.patch_size
        ratio = math.sqrt(rows * cols / (mm.max_tiles * side * side)) if mm.max_tiles else 0.0
        return (int(rows // ratio), int(cols // ratio)) if ratio > 1.1 else (rows, cols)

    def shrink(self, grid: torch.Tensor) -> torch.Tensor:
        rows, cols = self.packed_shape(self.mm, grid.shape[0], grid.shape[1])
        if (rows, cols) == grid.shape[:2]:
            return grid
        return F.interpolate(grid.permute(2, 0, 1)[None], [rows, cols], mode="bilinear")[0].permute(1, 2, 0)

    @staticmethod
    def tiles(item: MediaItem) -> torch.Tensor:
        if item.modality == "video":
            return item.inputs["pixel_values_videos"][0]  # (frames, 3, size, size)
        return LlavaNextForConditionalGeneration.tiles(item)

    def pack(self, item: MediaItem, f: torch.Tensor) -> torch.Tensor:
        if item.modality != "video":
            return super().pack(item, f)
        side = self.mm.tower.image_size // self.mm.tower.patch_size
        grid = f[:, -side * side:].reshape(f.shape[0], side, side, -1).permute(0, 3, 1, 2)  # (frames, hidden, side, side)
        pooled = F.interpolate(grid, [_pooled(self.mm)] * 2, mode="bilinear").permute(0, 2, 3, 1)
        return torch.cat([pooled.reshape(-1, f.shape[-1]), self.image_newline.to(f.dtype)[None]])
