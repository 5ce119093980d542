"""Chameleon's VQ-GAN image tokenizer (its encoder half): a conv encoder to a latent grid, a 1x1
conv into the codebook's space, and the nearest code per cell. An image becomes
VQTowerConfig.tokens discrete codes, which the model maps to text ids and embeds like text.
Parameter names are the checkpoint's (model.vqmodel.*); the decoder half (image generation)
is not built."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import VQTowerConfig


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head attention over the grid's cells (1x1 conv projections)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (f(n).reshape(b, c, h * w).transpose(1, 2) for f in (self.q, self.k, self.v))  # (b, cells, c)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # padded on the right and bottom only


class VQEncoder(nn.Module):
    def __init__(self, c: VQTowerConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, 3, padding=1)
        mult = (1, *c.channel_multiplier)
        res, self.down = c.resolution, nn.ModuleList()
        cin = c.base_channels
        for level in range(len(c.channel_multiplier)):
            down = nn.Module()
            cin, cout = c.base_channels * mult[level], c.base_channels * mult[level + 1]
            down.block = nn.ModuleList()
            down.attn = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                down.block.append(ResnetBlock(cin, cout))
                cin = cout
                if res in c.attn_resolutions:
                    down.attn.append(AttnBlock(cin))
            if level != len(c.channel_multiplier) - 1:
                down.downsample = Downsample(cin)
                res //= 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(cin, cin)
        self.mid.attn_1 = AttnBlock(cin) if c.mid_attention else nn.Identity()
        self.mid.block_2 = ResnetBlock(cin, cin)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, c.latent_channels * (2 if c.double_latent else 1), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for down in self.down:
            for i, block in enumerate(down.block):
                x = block(x)
                if len(down.attn):
                    x = down.attn[i](x)
            if hasattr(down, "downsample"):
                x = down.downsample(x)
        x = self.mid.block_2(self.mid.attn_1(self.mid.block_1(x)))
        return self.conv_out(F.silu(self.norm_out(x)))


class VectorQuantizer(nn.Module):
    def __init__(self, c: VQTowerConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(c.num_embeddings, c.embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (images, dim, h, w) -> (images, h * w) nearest code per cell (row-major)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.embedding.weight
        # |z|^2 + |e|^2 - 2 z.e, as transformers computes it (ties break alike)
        dist = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.T
        return dist.argmin(1).view(z.shape[0], -1)


class ChameleonVQVAE(nn.Module):
    def __init__(self, c: VQTowerConfig) -> None:
        super().__init__()
        self.encoder = VQEncoder(c)
        self.quant_conv = nn.Conv2d(c.latent_channels, c.embed_dim, 1)
        self.quantize = VectorQuantizer(c)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (images, channels, size, size) -> (images, tokens) codes."""
        w = self.quant_conv.weight
        return self.quantize(self.quant_conv(self.encoder(pixels.to(w.dtype))))
