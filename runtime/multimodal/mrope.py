"""M-RoPE positions (Qwen2-VL, Qwen2.5-VL): text tokens count up by one on all three axes; an
image or video's tokens take (temporal, height, width) grid positions starting where the text
before them left off, and the text after continues from start + max(grid height, grid width),
as transformers' get_rope_index numbers them. Decode and cached prefixes use the same numbers
(a prefix's positions depend only on the prefix)."""

from __future__ import annotations

import torch

from .items import MediaItem


def mrope_positions(length: int, items: list[MediaItem], merge_size: int,
                    tokens_per_second: float = 0.0) -> tuple[torch.Tensor, int]:
    """-> ((3, length) positions of the expanded prompt, delta: output token i sits at i + delta).

    Each item's inputs hold its (1, 3) grid in patches (image_grid_thw or video_grid_thw); a
    2.5 video also holds second_per_grid_ts (1,): its temporal step is then
    tokens_per_second * that (float32, as transformers rounds it), else 1."""
    parts: list[torch.Tensor] = []
    pos, at = 0, 0  # next position, next prompt index
    for it in sorted(items, key=lambda i: i.offset):
        text = it.offset - at
        parts.append(torch.arange(pos, pos + text).expand(3, -1))
        pos += text
        t, h, w = (int(x) for x in grid_thw(it).reshape(-1))
        h, w = h // merge_size, w // merge_size
        step = (tokens_per_second * it.inputs["second_per_grid_ts"].float() if "second_per_grid_ts" in it.inputs
                else torch.tensor(1.0))
        tt = (torch.arange(t) * step).long()[:, None, None].expand(t, h, w)
        hh = torch.arange(h)[None, :, None].expand(t, h, w)
        ww = torch.arange(w)[None, None, :].expand(t, h, w)
        grid = torch.stack([tt, hh, ww]).reshape(3, -1) + pos  # (3, t * h * w)
        if grid.shape[1] != it.length:
            raise RuntimeError(f"a {it.modality} of {it.length} tokens has a grid of {grid.shape[1]}")
        parts.append(grid)
        pos += max(h, w)
        at = it.end
    parts.append(torch.arange(pos, pos + length - at).expand(3, -1))
    table = torch.cat(parts, dim=1).to(torch.int64)
    return table, int(table.max()) + 1 - length if length else 0


def grid_thw(item: MediaItem) -> torch.Tensor:
    """(1, 3) temporal/height/width patches of an image or video item."""
    return item.inputs["image_grid_thw" if item.modality == "image" else "video_grid_thw"]
