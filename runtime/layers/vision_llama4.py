"""Llama 4's vision tower: tiles unfolded into patches and embedded by a linear layer (no bias),
a class embedding appended after the patches, learned positions, LayerNorm before and after
pre-norm blocks whose attention rotates adjacent q/k pairs by a 2-D rope (a quarter of the head's
pairs by column + 1, the next quarter by row + 1, none for the class token), then the class
token dropped and the vision adapter: pixel shuffle and a two-layer GELU MLP (GELU after both)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import VisionTowerConfig
from .linear import Linear, QKVLinear
from .norm import LayerNorm
from .vision import VisionMLP
from .vision_intern import pixel_shuffle


def llama4_rope(side: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (side^2 + 1, head_dim / 2): the angle of each adjacent pair of each patch
    (row-major), then the class token's (zero)."""
    freq_dim = head_dim // 2
    base = 1.0 / theta ** (torch.arange(0, freq_dim, 2)[: freq_dim // 2].float() / freq_dim)  # (head_dim / 4,)
    idx = torch.arange(side * side)
    angles = torch.cat([(idx % side + 1)[:, None] * base, (idx // side + 1)[:, None] * base], dim=1)
    angles = torch.cat([angles, torch.zeros(1, angles.shape[1])])
    return angles.cos(), angles.sin()


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., tokens, heads, head_dim) with (x0, x1) pairs rotated by cos/sin (tokens, head_dim / 2), in float32."""
    v = x.float().unflatten(-1, (-1, 2))
    c, s = cos[:, None, :], sin[:, None, :]
    out = torch.stack([v[..., 0] * c - v[..., 1] * s, v[..., 0] * s + v[..., 1] * c], dim=-1)
    return out.flatten(-2).to(x.dtype)


class Llama4VisionAttention(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = c.num_heads, c.hidden_size // c.num_heads
        self.qkv_proj = QKVLinear(c.hidden_size, self.head_dim, c.num_heads, c.num_heads, bias=True)
        self.o_proj = Linear(c.hidden_size, c.hidden_size, bias=True)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x (tiles, tokens, hidden): every token sees every token of its tile."""
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.heads, self.head_dim) for t in self.qkv_proj.split(self.qkv_proj(x)))
        q, k = rotate_pairs(q, *rope), rotate_pairs(k, *rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class Llama4VisionLayer(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.input_layernorm = LayerNorm(c.hidden_size, 1e-5)
        self.self_attn = Llama4VisionAttention(c)
        self.post_attention_layernorm = LayerNorm(c.hidden_size, 1e-5)
        self.mlp = VisionMLP(c)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama4VisionAdapter(nn.Module):
    """Pixel shuffle, then fc1 (shuffled width -> projector_input_dim), GELU, fc2, GELU; no biases."""

    def __init__(self, ratio: float, shuffled: int, inner: int, out: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.mlp = nn.Module()
        self.mlp.fc1 = Linear(shuffled, inner, bias=False)
        self.mlp.fc2 = Linear(inner, out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = int(x.shape[1] ** 0.5)
        x = pixel_shuffle(x.reshape(x.shape[0], side, side, -1), self.ratio)
        x = F.gelu(self.mlp.fc1(x.reshape(x.shape[0], -1, x.shape[-1])))
        return F.gelu(self.mlp.fc2(x))


class Llama4VisionTower(nn.Module):
    """Names follow the checkpoint's `vision_model.*`."""

    def __init__(self, c: VisionTowerConfig, shuffle_ratio: float) -> None:
        super().__init__()
        self.config = c
        side = c.image_size // c.patch_size
        self.patch_embedding = nn.Module()
        self.patch_embedding.linear = Linear(c.num_channels * c.patch_size**2, c.hidden_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(c.hidden_size), requires_grad=False)
        self.positional_embedding_vlm = nn.Parameter(torch.zeros(side * side + 1, c.hidden_size), requires_grad=False)
        self.layernorm_pre = LayerNorm(c.hidden_size, 1e-5)
        self.layernorm_post = LayerNorm(c.hidden_size, 1e-5)
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(Llama4VisionLayer(c) for _ in range(c.num_layers))
        self.vision_adapter = Llama4VisionAdapter(shuffle_ratio, c.intermediate_size, c.adapter_dim, c.out_hidden_size)
        cos, sin = llama4_rope(side, c.hidden_size // c.num_heads, c.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """tiles (tiles, 3, size, size) -> (tiles, tokens a tile, out_hidden_size)."""
        w = self.patch_embedding.linear.weight
        if tiles.shape[-1] != self.config.image_size or tiles.shape[-2] != self.config.image_size:
            raise ValueError(f"image_data: tiles of {tuple(tiles.shape[-2:])} px; the tower takes {self.config.image_size}")
        patches = F.unfold(tiles.to(w.device, w.dtype), self.config.patch_size, stride=self.config.patch_size)
        x = self.patch_embedding.linear(patches.transpose(1, 2))  # (tiles, patches, hidden)
        x = torch.cat([x, self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)], dim=1)
        x = self.layernorm_pre(x + self.positional_embedding_vlm.to(x.dtype))
        rope = (self.rope_cos, self.rope_sin)
        for layer in self.model.layers:
            x = layer(x, rope)
        return self.vision_adapter(self.layernorm_post(x)[:, :-1])
