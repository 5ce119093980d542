"""GLM-4.1V / GLM-4.5V's vision tower: Qwen2-VL's patches (layers/vision_qwen2.py: the same
block-major order, 2-D rope over (row, column) and per-frame attention, RMSNorm blocks with a
gated MLP), and around them

- an RMSNorm right after the patch embedding;
- a learned square position table (image_size / patch_size a side) resampled bicubically
  (grid_sample, corners not aligned, border padding) at each patch's centre in its frame's
  grid, added to the patches;
- after the blocks an RMSNorm, then a conv whose kernel and stride are merge_size (one
  matrix product per merge block: the block's patches are contiguous) and the merger:
  linear, LayerNorm, GELU, then a gated MLP of inner width adapter_dim."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import VisionTowerConfig
from .linear import Linear
from .norm import LayerNorm, RMSNorm
from .vision_qwen2 import GatedVisionMLP, PatchEmbed, QwenVisionBlock, VisionRotary, patch_positions


def bicubic_positions(table: torch.Tensor, grid: list[tuple[int, int, int]], merge: int) -> torch.Tensor:
    """(side * side, hidden) learned positions -> (patches, hidden) in the processor's order:
    each frame's (h, w) grid samples the square table bicubically at the patch centres
    ((row + 0.5) / h of the table's extent), repeated over the frames; float32 sampling."""
    side = int(round(table.shape[0] ** 0.5))
    image = table.view(side, side, -1).permute(2, 0, 1)[None].float()  # (1, hidden, side, side)
    pos = patch_positions(grid, merge).to(table.device).float()  # (patches, 2) row, column
    sizes = torch.cat([torch.tensor([[h, w]]).expand(t * h * w, 2) for t, h, w in grid]).to(table.device).float()
    norm = (pos + 0.5) / sizes * 2 - 1  # (patches, 2) in [-1, 1]
    where = norm.flip(-1)[None, :, None, :]  # (1, patches, 1, 2) as (x = column, y = row)
    out = F.grid_sample(image, where, mode="bicubic", align_corners=False, padding_mode="border")
    return out[0, :, :, 0].T.to(table.dtype)  # (patches, hidden)


class Glm4vEmbeddings(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.position_embedding = nn.Embedding(c.position_embeddings, c.hidden_size)


class Glm4vMerger(nn.Module):
    """(blocks, out_hidden) -> (blocks, out_hidden): proj, LayerNorm, GELU, gated MLP."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        width = c.out_hidden_size
        self.proj = Linear(width, width, bias=False)
        self.post_projection_norm = LayerNorm(width, 1e-5)
        self.mlp = GatedVisionMLP(dataclasses.replace(c, hidden_size=width, intermediate_size=c.adapter_dim), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(F.gelu(self.post_projection_norm(self.proj(x))))


class Glm4vVisionTower(nn.Module):
    """Names follow the checkpoint's `visual.*` (the merger's gate/up/down under merger.mlp:
    the model renames them)."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.config = c
        self.patch_embed = PatchEmbed(c)
        self.post_conv_layernorm = RMSNorm(c.hidden_size, c.norm_eps)
        self.embeddings = Glm4vEmbeddings(c)
        self.rotary = VisionRotary(c.hidden_size // c.num_heads, c.rope_theta)
        self.blocks = nn.ModuleList(QwenVisionBlock(c) for _ in range(c.num_layers))
        self.post_layernorm = RMSNorm(c.hidden_size, c.norm_eps)
        m = c.merge_size
        self.downsample = nn.Conv2d(c.hidden_size, c.out_hidden_size, m, m)
        self.downsample.requires_grad_(False)
        self.merger = Glm4vMerger(c)

    def forward(self, pixels: torch.Tensor, grid: list[tuple[int, int, int]]) -> torch.Tensor:
        """pixels (patches, patch_dim) of items with grids (t, h, w) in patches -> (patches /
        merge_size^2, out_hidden) decoder-input rows, item after item."""
        c = self.config
        x = self.post_conv_layernorm(self.patch_embed(pixels))
        x = x + bicubic_positions(self.embeddings.position_embedding.weight, grid, c.merge_size).to(x.dtype)
        cos, sin = self.rotary(patch_positions(grid, c.merge_size).to(x.device))
        frames = [h * w for t, h, w in grid for _ in range(t)]  # attention stays within a frame
        for block in self.blocks:
            x = block(x, (cos, sin), frames)
        x = self.post_layernorm(x)
        # each merge block's m * m patches (row-major) -> the conv's (hidden, m, m) input, flattened
        blocks = x.view(-1, c.merge_size**2, c.hidden_size).transpose(1, 2).flatten(1)
        w = self.downsample.weight
        return self.merger(F.linear(blocks, w.view(w.shape[0], -1), self.downsample.bias))
