"""InternViT (InternVL's tower) and pixel shuffle. The tower is CLIP's ViT (layers/vision.py:
the same attention and MLP) with a class token and learned positions added after a biased
patch convolution, no pre-norm, LayerNorm or RMSNorm blocks whose two residual branches are
scaled per channel by learned `lambda_1` / `lambda_2`, optional q/k RMSNorm, and a final
LayerNorm only for checkpoints without mean pooling."""

from __future__ import annotations

import torch
from torch import nn

from ..multimodal.towers import VisionTowerConfig
from .norm import LayerNorm, RMSNorm
from .vision import VisionAttention, VisionMLP


def _norm(c: VisionTowerConfig) -> nn.Module:
    return RMSNorm(c.hidden_size, c.norm_eps) if c.rms_norm else LayerNorm(c.hidden_size, c.norm_eps)


class InternVisionLayer(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.layernorm_before = _norm(c)
        self.attention = VisionAttention(c)
        self.layernorm_after = _norm(c)
        self.mlp = VisionMLP(c)
        self.lambda_1 = nn.Parameter(torch.ones(c.hidden_size), requires_grad=False)
        self.lambda_2 = nn.Parameter(torch.ones(c.hidden_size), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (tiles, 1 + patches, hidden) -> the same shape."""
        x = x + self.lambda_1 * self.attention(self.layernorm_before(x))
        return x + self.lambda_2 * self.mlp(self.layernorm_after(x))


class InternVisionEmbeddings(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size), requires_grad=False)
        self.projection = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size)
        self.projection.requires_grad_(False)
        self.position_embeddings = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.hidden_size), requires_grad=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (tiles, channels, size, size), tiles of the tower's size -> (tiles, 1 + patches, hidden)."""
        w = self.projection.weight
        patches = self.projection(pixels.to(w.dtype)).flatten(2).transpose(1, 2)  # (tiles, patches, hidden)
        if patches.shape[1] + 1 != self.position_embeddings.shape[1]:
            raise ValueError(f"image_data: tiles of {tuple(pixels.shape[-2:])} px; InternViT takes its "
                             f"image_size square tiles (the image processor's size)")
        x = torch.cat([self.cls_token.to(w.dtype).expand(patches.shape[0], 1, -1), patches], dim=1)
        return x + self.position_embeddings.to(w.dtype)


class InternVisionTower(nn.Module):
    """Names follow the checkpoint's `vision_tower.*` (embeddings, encoder.layer, layernorm)."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.config = c
        self.embeddings = InternVisionEmbeddings(c)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(InternVisionLayer(c) for _ in range(c.num_layers))
        self.layernorm = LayerNorm(c.hidden_size, c.norm_eps) if c.norm_last_features else None

    def features(self, pixels: torch.Tensor, layer: int) -> torch.Tensor:
        """hidden_states[layer] as transformers numbers them (0: the embeddings; -1: the last
        layer's output, LayerNormed without mean pooling), layers after it not run."""
        total = len(self.encoder.layer)
        wanted = layer % (total + 1)
        x = self.embeddings(pixels)
        for block in self.encoder.layer[:wanted]:
            x = block(x)
        if wanted == total and self.layernorm is not None and layer == -1:
            x = self.layernorm(x)
        return x


def pixel_shuffle(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """(tiles, side, side, channels) -> (tiles, side * ratio, side * ratio, channels / ratio^2),
    transformers' InternVL order (columns folded first, then rows, each with a transpose)."""
    b, w, h, c = x.shape
    # sizes rounded: a ratio of 1 / 3 (Idefics3's scale_factor 3) is not exact in floating point
    nh, nw, c1, c2 = (round(v) for v in (h * ratio, w * ratio, c / ratio, c / ratio**2))
    if abs(h * ratio - nh) > 1e-6 or abs(w * ratio - nw) > 1e-6:
        raise ValueError(f"vision_config: a {w}x{h} patch grid does not shuffle by downsample_ratio={ratio}")
    x = x.reshape(b, w, nh, c1).permute(0, 2, 1, 3)
    x = x.reshape(b, nh, nw, c2).permute(0, 2, 1, 3)
    return x.contiguous()
