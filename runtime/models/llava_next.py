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

    @classmethod
    def num_media_tokens(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        side = mm.tower.image_size // mm.tower.patch_size
        base = side * side + (mm.tower.cls_tokens if mm.select_strategy == "full" else 0)
        if inputs["pixel_values"].reshape(-1, *inputs["pixel_values"].shape[-3:]).shape[0] == 1:
            return base + 1  # one tile (OneVision's images of a multi-image prompt): base, newline
        h, w = (int(v) for v in inputs["image_sizes"].reshape(-1))
        rows, cols = cls.packed_shape(mm, *anyres_grid(mm, h, w)[2:])
        return base + rows * (cols + 1)

    @staticmethod
    def packed_shape(mm: MultimodalConfig, rows: int, cols: int) -> tuple[int, int]:
        """The unpadded grid's shape as the decoder gets it (OneVision may shrink it)."""
        return rows, cols

    def shrink(self, grid: torch.Tensor) -> torch.Tensor:
        """(rows, cols, hidden) -> the grid packed_shape says."""
        return grid

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) rows per image: the base tile's patches, then the unpadded
        grid row by row, each row ending with image_newline; all tiles in one tower call."""
        tiles = [self.tiles(it) for it in items]
        feats = self.image_features(torch.cat(tiles)).split([t.shape[0] for t in tiles])  # (tiles, tokens, hidden) each
        return [self.pack(it, f) for it, f in zip(items, feats)]

    @staticmethod
    def tiles(item: MediaItem) -> torch.Tensor:
        """(tiles, 3, size, size) of an image item (the base tile first)."""
        return item.inputs["pixel_values"].reshape(-1, *item.inputs["pixel_values"].shape[-3:])

    def pack(self, item: MediaItem, f: torch.Tensor) -> torch.Tensor:
        """One image's tile features (tiles, tokens, hidden) -> its decoder rows."""
        newline = self.image_newline.to(f.dtype)
        if f.shape[0] == 1:
            return torch.cat([f[0], newline[None]])
        side = self.mm.tower.image_size // self.mm.tower.patch_size
        h, w = (int(v) for v in item.inputs["image_sizes"].reshape(-1))
        tiles_h, tiles_w, rows, cols = anyres_grid(self.mm, h, w)
        grid = f[1:, -side * side:].reshape(tiles_h, tiles_w, side, side, -1)
        grid = grid.permute(0, 2, 1, 3, 4).reshape(tiles_h * side, tiles_w * side, -1)  # (rows, cols, hidden)
        top, left = (grid.shape[0] - rows) // 2, (grid.shape[1] - cols) // 2
        grid = self.shrink(grid[top : top + rows, left : left + cols])
        rows_out = torch.cat([grid, newline.expand(grid.shape[0], 1, -1)], dim=1)
        return torch.cat([f[0], rows_out.reshape(-1, grid.shape[-1])])
