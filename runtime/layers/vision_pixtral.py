"""Pixtral's ViT (Mistral3's and LLaVA-Pixtral's tower): images of any size (sides multiples of
the patch size) are cut into patches by a convolution without bias, RMS-normed (ln_pre), and
run through RMSNorm blocks with a gated MLP, no biases, and the 2-D rope of vision_qwen2.py
(the head's even frequencies for rows, the odd ones for columns); each image's patches attend
only to each other (one sequence of all images, block-diagonal attention).

Also Mistral3's patch merger: every merge x merge block of neighbouring patches into one row."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import VisionTowerConfig
from .linear import Linear, QKVLinear
from .norm import RMSNorm
from .vision_qwen2 import GatedVisionMLP, VisionRotary, segment_attention


class PixtralAttention(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = c.num_heads, c.hidden_size // c.num_heads
        self.qkv_proj = QKVLinear(c.hidden_size, self.head_dim, c.num_heads, c.num_heads, bias=False)
        self.o_proj = Linear(c.hidden_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor], segments: list[int]) -> torch.Tensor:
        """x (patches, hidden) of all images -> the same shape."""
        n = x.shape[0]
        q, k, v = (t.view(n, self.heads, self.head_dim) for t in self.qkv_proj.split(self.qkv_proj(x)))
        return self.o_proj(segment_attention(q, k, v, cos_sin, segments).reshape(n, -1))


class PixtralBlock(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(c.hidden_size, c.norm_eps)
        self.attention = PixtralAttention(c)
        self.ffn_norm = RMSNorm(c.hidden_size, c.norm_eps)
        self.feed_forward = GatedVisionMLP(c, bias=False)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor], segments: list[int]) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos_sin, segments)
        return x + self.feed_forward(self.ffn_norm(x))


class PixtralVisionTower(nn.Module):
    """Names follow the checkpoint's `vision_tower.*` (patch_conv, ln_pre, transformer.layers)."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.config = c
        self.patch_conv = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, bias=False)
        self.patch_conv.requires_grad_(False)
        self.ln_pre = RMSNorm(c.hidden_size, c.norm_eps)
        self.transformer = nn.Module()
        self.transformer.layers = nn.ModuleList(PixtralBlock(c) for _ in range(c.num_layers))
        self.rotary = VisionRotary(c.hidden_size // c.num_heads, c.rope_theta, split_axes=True)

    def features(self, images: list[torch.Tensor], layer: int) -> list[torch.Tensor]:
        """images: (3, height, width) each, sides multiples of patch_size -> (rows * columns,
        hidden) per image, row-major: hidden_states[layer] as transformers numbers them (0: the
        patch embeddings after ln_pre), layers after it not run."""
        w, p = self.patch_conv.weight, self.config.patch_size
        grids = [(im.shape[-2] // p, im.shape[-1] // p) for im in images]
        x = torch.cat([self.patch_conv(im[None].to(w.device, w.dtype))[0].flatten(1).T for im in images])
        x = self.ln_pre(x)  # (patches of all images, hidden)
        positions = torch.cat([torch.stack(torch.meshgrid(torch.arange(h), torch.arange(c), indexing="ij"), -1).reshape(-1, 2)
                               for h, c in grids]).to(w.device)
        cos_sin = self.rotary(positions)
        segments = [h * c for h, c in grids]
        for block in self.transformer.layers[: layer % (len(self.transformer.layers) + 1)]:
            x = block(x, cos_sin, segments)
        return list(x.split(segments))


def merge_patches(x: torch.Tensor, rows: int, cols: int, merge: int) -> torch.Tensor:
    """(rows * cols, d) row-major patches -> (rows/merge * cols/merge, d * merge^2): each block's
    patches side by side, channel-major as transformers' unfold orders them."""
    grid = x.view(rows, cols, -1).permute(2, 0, 1)[None]  # (1, d, rows, cols)
    return F.unfold(grid, kernel_size=merge, stride=merge)[0].T
