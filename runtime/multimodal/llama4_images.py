"""Llama 4's image processor on PIL (transformers ships only a torchvision one): the image is
resized without distortion onto the best canvas of whole tiles (at most max_patches of them;
never upscaled past one tile's side unless resize_to_max_canvas), padded right and bottom with
black, normalized in bfloat16 as the original code does, and cut into tiles row by row; with
more than one tile a global tile (the whole image resized to one tile) comes last.

NOTE: PIL's bilinear resize stands in for torchvision's antialiased bilinear: close, not
bit-identical pixels (the parity test feeds these pixels to transformers' model)."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from PIL import Image


def supported_canvases(max_tiles: int, tile: int) -> list[tuple[int, int]]:
    """(height, width) of every grid of at most max_tiles tiles, in transformers' order."""
    by_ratio: dict[float, list[tuple[int, int]]] = defaultdict(list)
    for n in range(max_tiles, 0, -1):
        for f in sorted({d for d in range(1, n + 1) if n % d == 0}):
            by_ratio[f / (n // f)].append((f, n // f))
    return [(h * tile, w * tile) for grids in by_ratio.values() for h, w in grids]


def best_canvas(height: int, width: int, canvases: list[tuple[int, int]], to_max: bool) -> tuple[int, int]:
    """The canvas an image fits with the least upscaling (or, none fitting, the least
    downscaling); the smallest area among equals."""
    scales = [min(w / width, h / height) for h, w in canvases]
    up = [s for s in scales if s >= 1]
    pick = (max(up) if to_max else min(up)) if up else max(scales)
    return min((c for c, s in zip(canvases, scales) if s == pick), key=lambda c: c[0] * c[1])


def fit_without_distortion(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.floor(height * scale_w), target_h), target_w
    return target_h, min(math.floor(width * scale_h), target_w)


class Llama4ImageProcessor:
    """Reads the folder's preprocessor_config.json (size, max_patches, mean/std, ...)."""

    def __init__(self, config: dict[str, Any]) -> None:
        size = config.get("size", {"height": 336, "width": 336})
        if size["height"] != size["width"]:
            raise ValueError(f"preprocessor_config.json: size {size} must be square for Llama 4")
        self.tile = int(size["height"])
        self.max_patches = int(config.get("max_patches", 16))
        self.to_max = bool(config.get("resize_to_max_canvas", False))
        self.mean = torch.tensor(config.get("image_mean", [0.5] * 3), dtype=torch.bfloat16)[:, None, None]
        self.std = torch.tensor(config.get("image_std", [0.5] * 3), dtype=torch.bfloat16)[:, None, None]
        self.rescale = float(config.get("rescale_factor", 1 / 255))

    @classmethod
    def from_folder(cls, folder: str) -> Llama4ImageProcessor:
        path = os.path.join(folder, "preprocessor_config.json")
        if not os.path.exists(path):
            raise ValueError(f"{folder}: no preprocessor_config.json (Llama 4's image processor settings)")
        with open(path) as f:
            return cls(json.load(f))

    def _normalize(self, img: Image.Image) -> torch.Tensor:
        """(3, h, w) bfloat16, as the original: rescaled and normalized in bfloat16."""
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return (x.to(torch.bfloat16) * self.rescale - self.mean) / self.std

    def __call__(self, images: list[Image.Image], return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        """pixel_values (tiles of all images, 3, tile, tile) and aspect_ratios (images, 2) = (rows, columns)."""
        tiles, ratios = [], []
        for img in images:
            img = img.convert("RGB")
            w, h = img.size
            ch, cw = best_canvas(h, w, supported_canvases(self.max_patches, self.tile), self.to_max)
            th, tw = (ch, cw) if self.to_max else (min(max(h, self.tile), ch), min(max(w, self.tile), cw))
            nh, nw = fit_without_distortion(h, w, th, tw)
            canvas = Image.new("RGB", (cw, ch))
            canvas.paste(img.resize((max(nw, 1), max(nh, 1)), Image.BILINEAR), (0, 0))
            x = self._normalize(canvas)
            rows, cols = ch // self.tile, cw // self.tile
            x = x.reshape(3, rows, self.tile, cols, self.tile).permute(1, 3, 0, 2, 4).reshape(-1, 3, self.tile, self.tile)
            if rows * cols > 1:
                x = torch.cat([x, self._normalize(img.resize((self.tile, self.tile), Image.BILINEAR))[None]])
            tiles.append(x)
            ratios.append((rows, cols))
        return {"pixel_values": torch.cat(tiles), "aspect_ratios": torch.tensor(ratios)}
