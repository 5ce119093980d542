"""LLaVA-NeXT (`LlavaNextForConditionalGeneration`): LLaVA 1.5 with anyres tiling. The
processor resizes each image onto the best of `image_grid_pinpoints` and cuts it into
tower-sized tiles after one base tile of the whole image; the tiles' patch features are laid
back into one grid, the padding the resize added is cut off ("unpad"), and an `image_newline`
row ends every row of the grid. Tokens per image: base patches + rows * (columns + 1).

# differs from LLaVA 1.5: the token count depends on the image's size (tiles, unpad) and the
# newline embedding is a learned parameter."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llava import LlavaForConditionalGeneration


def anyres_grid(mm: MultimodalConfig, height: int, width: int) -> tuple[int, int, int, int]:
    """(tiles down, tiles across, rows, columns) of an image of height x width: the tile grid
    of its best canvas, and the patch grid left after unpadding (transformers' rounding)."""
    from transformers.image_processing_utils import select_best_resolution

    tile, side = mm.tower.image_size, mm.tower.image_size // mm.tower.patch_size
    best_h, best_w = select_best_resolution((height, width), [list(p) for p in mm.grid_pinpoints])
    tiles_h, tiles_w = best_h // tile, best_w // tile
    rows, cols = tiles_h * side, tiles_w * side
    if width / height > cols / rows:  # wider than the canvas: padded above and below
        pad = (rows - int(round(height * (cols / width), 7))) // 2
        rows -= 2 * pad
    else:
        pad = (cols - int(round(width * (rows / height), 7))) // 2
        cols -= 2 * pad
    return tiles_h, tiles_w, rows, cols


class LlavaNextForConditionalGeneration(LlavaForConditionalGeneration):
    renamed_weights = [(r"^model\.image_newline$", "image_newline"), *LlavaForConditionalGeneration.renamed_weights]

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        if not self.mm.grid_pinpoints:
            raise ValueError(f"{config.architecture}: config.json has no image_grid_pinpoints")
        self.image_newline = nn.Parameter(torch.empty(config.hidden_size), requires_grad=False)

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        side = mm.tower.image_size // mm.tower.patch_size
        h, w = (int(v) for v in inputs["image_sizes"].reshape(-1))
        _, _, rows, cols = anyres_grid(mm, h, w)
        return side * side + (1 if mm.select_strategy == "full" else 0) + rows * (cols + 1)

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) rows per image: the base tile's patches, then the unpadded
        grid row by row, each row ending with image_newline; all tiles in one tower call."""
        tiles = [it.inputs["pixel_values"].reshape(-1, *it.inputs["pixel_values"].shape[-3:]) for it in items]
        feats = self.image_features(torch.cat(tiles)).split([t.shape[0] for t in tiles])  # (tiles, tokens, hidden) each
        side = self.mm.tower.image_size // self.mm.tower.patch_size
        out = []
        for it, f in zip(items, feats):
            h, w = (int(v) for v in it.inputs["image_sizes"].reshape(-1))
            tiles_h, tiles_w, rows, cols = anyres_grid(self.mm, h, w)
            grid = f[1:, -side * side:].reshape(tiles_h, tiles_w, side, side, -1)
            grid = grid.permute(0, 2, 1, 3, 4).reshape(tiles_h * side, tiles_w * side, -1)  # (rows, cols, hidden)
            top, left = (grid.shape[0] - rows) // 2, (grid.shape[1] - cols) // 2
            grid = grid[top : top + rows, left : left + cols]
            newline = self.image_newline.to(grid.dtype).expand(rows, 1, -1)
            out.append(torch.cat([f[0], torch.cat([grid, newline], dim=1).reshape(-1, grid.shape[-1])]))
        return out
