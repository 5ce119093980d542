"""Phi-4-multimodal's HD image transform on PIL/torch (transformers ships only a torchvision
Phi4MultimodalImageProcessor): the image is resized without distortion onto a grid of
crop x crop tiles (as many as its size needs, or, past dynamic_hd tiles, the grid of the
closest aspect ratio), padded right and bottom with white, rescaled and normalized; the tiles
follow a global image (the padded canvas resized to one tile, bicubic). A patch mask per tile
marks the patches wholly in the padding (0), which the tower and the token layout skip.

NOTE: torch's antialiased bilinear resize of the uint8 image stands in for torchvision's (the
same kernel as torchvision uses on CPU uint8 tensors); the parity test feeds these pixels to
transformers' model, and checks the token counts against transformers' own rule."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F


def closest_ratio(aspect: float, ratios: list[tuple[int, int]], width: int, height: int, crop: int) -> tuple[int, int]:
    """transformers' find_closest_aspect_ratio: the nearest (cols, rows); among equals a later
    (larger) one when the image covers more than half of its area."""
    best, best_diff = (1, 1), float("inf")
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and width * height > 0.5 * crop * crop * r[0] * r[1]:
            best = r
    return best


def hd_grid(width: int, height: int, crop: int, max_crops: int) -> tuple[int, int]:
    """(cols, rows) of crop tiles the image is fitted onto."""
    cols, rows = math.ceil(width / crop), math.ceil(height / crop)
    if cols * rows <= max_crops:
        return cols, rows
    ratios = {(i, j) for n in range(1, max_crops + 1) for i in range(1, n + 1) for j in range(1, n + 1)
              if 1 <= i * j <= max_crops}  # the same set, in the same order, as transformers builds
    return closest_ratio(width / height, sorted(ratios, key=lambda x: x[0] * x[1]), width, height, crop)


class Phi4MMImageProcessor:
    """Reads the folder's preprocessor_config.json (size, patch_size, dynamic_hd, mean/std)."""

    def __init__(self, config: dict[str, Any]) -> None:
        size = config.get("size", {"height": 448, "width": 448})
        if size["height"] != size["width"]:
            raise ValueError(f"preprocessor_config.json: size {size} must be square for Phi-4-multimodal")
        self.crop = int(size["height"])
        self.patch = int(config.get("patch_size", 14))
        self.max_crops = int(config.get("dynamic_hd", 36))
        self.mean = torch.tensor(config.get("image_mean", [0.5] * 3), dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(config.get("image_std", [0.5] * 3), dtype=torch.float32)[:, None, None]
        self.rescale = float(config.get("rescale_factor", 1 / 255))

    @classmethod
    def from_folder(cls, folder: str) -> Phi4MMImageProcessor:
        path = os.path.join(folder, "preprocessor_config.json")
        if not os.path.exists(path):
            raise ValueError(f"{folder}: no preprocessor_config.json (Phi-4-multimodal's image settings)")
        with open(path) as f:
            return cls(json.load(f))

    def __call__(self, image: Any, field: str = "image_data") -> dict[str, torch.Tensor]:
        """-> pixel_values (1 + tiles, 3, crop, crop): the global image, then the tiles row by
        row; patch_mask (1 + tiles, crop / patch, crop / patch) bool; grid (2,): rows, cols."""
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, h, w)
        h, w = x.shape[1:]
        crop, m = self.crop, self.crop // self.patch
        cols, rows = hd_grid(w, h, crop, self.max_crops)
        tw, th = crop * cols, crop * rows
        if tw / w < th / h:
            new_w, new_h = tw, int(h * tw / w)
        else:
            new_w, new_h = int(w * th / h), th
        if min(new_h, th) < 10 or min(new_w, tw) < 10:
            raise ValueError(f"{field}: a {w}x{h} image's aspect ratio is too extreme for Phi-4-multimodal's crops "
                             f"(it would be {new_w}x{new_h} px); crop it closer to square")
        resized = F.interpolate(x[None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
        canvas = torch.full((3, th, tw), 255, dtype=torch.uint8)
        canvas[:, :new_h, :new_w] = resized
        mask = torch.ones(m * rows, m * cols, dtype=torch.bool)
        if tw - new_w >= self.patch:
            mask[:, -((tw - new_w) // self.patch):] = False
        if th - new_h >= self.patch:
            mask[-((th - new_h) // self.patch):, :] = False
        pixels = (canvas.float() * self.rescale - self.mean) / self.std
        glob = F.interpolate(pixels[None], size=(crop, crop), mode="bicubic", align_corners=False, antialias=False)
        tiles = pixels.reshape(3, rows, crop, cols, crop).permute(1, 3, 0, 2, 4).reshape(-1, 3, crop, crop)
        tile_masks = mask.reshape(rows, m, cols, m).transpose(1, 2).reshape(-1, m, m)
        return {"pixel_values": torch.cat([glob, tiles]),
                "patch_mask": torch.cat([torch.ones(1, m, m, dtype=torch.bool), tile_masks]),
                "grid": torch.tensor([rows, cols], dtype=torch.int64)}
