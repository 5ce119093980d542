"""The Mllama (Llama 3.2 Vision) tower: an image is up to max_num_tiles square tiles (padding
tiles after its own); patches of every tile get a class token, learned positions gated against
per-aspect-ratio tile positions, a local encoder, then gated aspect-ratio embeddings and a
gated global encoder. The output is the global state with chosen local layers' states
after it (vision_output_dim wide).

# as transformers does: both encoders run over all tiles of an image as one sequence (each tile
# padded to a multiple of 8 patches), and the mask hides only pairs whose query AND key are
# padding (a real patch sees padding keys): so padding is part of the computation, reproduced."""

from __future__ import annotations

import torch
from torch import nn

from ..multimodal.towers import VisionTowerConfig
from .norm import LayerNorm
from .vision import VisionAttention, VisionMLP


def _frozen(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape), requires_grad=False)


class MllamaVisionLayer(nn.Module):
    def __init__(self, c: VisionTowerConfig, gated: bool) -> None:
        super().__init__()
        self.input_layernorm = LayerNorm(c.hidden_size, c.norm_eps)
        self.self_attn = VisionAttention(c, out_bias=False)
        self.post_attention_layernorm = LayerNorm(c.hidden_size, c.norm_eps)
        self.mlp = VisionMLP(c)
        self.gated = gated
        if gated:
            self.gate_attn, self.gate_ffn = _frozen(1), _frozen(1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.self_attn(self.input_layernorm(x), mask)
        x = x + (self.gate_attn.tanh() * h if self.gated else h)
        h = self.mlp(self.post_attention_layernorm(x))
        return x + (self.gate_ffn.tanh() * h if self.gated else h)


class MllamaEncoder(nn.Module):
    def __init__(self, c: VisionTowerConfig, layers: int, gated: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MllamaVisionLayer(c, gated) for _ in range(layers))


class AspectRatioEmbedding(nn.Module):
    """A gated (tiles, hidden) table per aspect-ratio id, added to each tile's rows."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.tiles, self.hidden = c.max_num_tiles, c.hidden_size
        self.embedding = nn.Embedding(c.max_aspect_ratio_id + 1, c.max_num_tiles * c.hidden_size)
        self.embedding.weight.requires_grad_(False)
        self.gate = _frozen(1)

    def forward(self, x: torch.Tensor, ratio_ids: torch.Tensor) -> torch.Tensor:
        """x (images, tiles, patches, hidden); ratio_ids (images,)."""
        return x + self.embedding(ratio_ids).view(-1, self.tiles, 1, self.hidden) * self.gate.tanh()


class GatedPositionEmbedding(nn.Module):
    """(1 - tanh g) * per-patch positions + tanh g * per-aspect-ratio tile positions."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.tiles, self.patches, self.hidden = c.max_num_tiles, c.num_patches + 1, c.hidden_size
        self.gate = _frozen(1)
        self.embedding = _frozen(self.patches, c.hidden_size)
        self.tile_embedding = nn.Embedding(c.max_aspect_ratio_id + 1, self.tiles * self.patches * c.hidden_size)
        self.tile_embedding.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor, ratio_ids: torch.Tensor) -> torch.Tensor:
        g = self.gate.tanh()
        tile = self.tile_embedding(ratio_ids).view(-1, self.tiles, self.patches, self.hidden)
        return x + (1 - g) * self.embedding + g * tile


class MllamaVisionTower(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        if not c.max_num_tiles:
            raise ValueError("vision_config: Mllama's tower needs max_num_tiles")
        self.c = c
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, bias=False)
        self.patch_embedding.weight.requires_grad_(False)
        self.class_embedding = _frozen(c.hidden_size)
        self.gated_positional_embedding = GatedPositionEmbedding(c)
        self.pre_tile_positional_embedding = AspectRatioEmbedding(c)
        self.post_tile_positional_embedding = AspectRatioEmbedding(c)
        self.layernorm_pre = LayerNorm(c.hidden_size)
        self.layernorm_post = LayerNorm(c.hidden_size)
        self.transformer = MllamaEncoder(c, c.num_layers, gated=False)
        self.global_transformer = MllamaEncoder(c, c.global_layers, gated=True)

    @property
    def out_width(self) -> int:
        return self.c.hidden_size * (1 + len(self.c.intermediate_layers))

    def forward(self, pixels: torch.Tensor, ratio_ids: torch.Tensor, tile_mask: torch.Tensor) -> torch.Tensor:
        """pixels (images, tiles, channels, size, size), ratio_ids (images,), tile_mask (images,
        tiles) 1 for an image's own tiles -> (images, tiles, 1 + patches, out_width)."""
        n, tiles = pixels.shape[:2]
        w = self.patch_embedding.weight
        x = self.patch_embedding(pixels.flatten(0, 1).to(w.dtype)).flatten(2).transpose(1, 2)  # (n * tiles, p, h)
        hidden = x.shape[-1]
        x = self.pre_tile_positional_embedding(x.view(n, tiles, -1, hidden), ratio_ids)
        cls = self.class_embedding.to(x.dtype).expand(n, tiles, 1, hidden)
        x = self.gated_positional_embedding(torch.cat([cls, x], dim=2), ratio_ids)  # (n, tiles, 1 + p, h)
        x = self.layernorm_pre(x)
        real = x.shape[2]
        length = real + (-real) % 8  # each tile padded to a multiple of 8 rows
        x = nn.functional.pad(x, (0, 0, 0, length - real))
        pad = torch.ones(n, tiles, length, dtype=x.dtype, device=x.device)
        pad[:, :, :real] = 1 - tile_mask.to(x.dtype)[:, :, None]
        pad = pad.view(n, 1, tiles * length, 1)
        mask = (pad @ pad.transpose(-1, -2)) * torch.finfo(x.dtype).min  # min where query and key are padding
        x = x.view(n, tiles * length, hidden)
        states = []
        for layer in self.transformer.layers:
            x = layer(x, mask)
            states.append(x)
        x = self.layernorm_post(x)
        x = self.post_tile_positional_embedding(x.view(n, tiles, length, hidden), ratio_ids).view(n, -1, hidden)
        for layer in self.global_transformer.layers:
            x = layer(x, mask)
        # the chosen local states interleaved per feature (transformers stacks them on a last axis)
        local = torch.stack([states[i] for i in self.c.intermediate_layers], dim=-1).flatten(-2)
        return torch.cat([p.view(n, tiles, length, -1)[:, :, :real] for p in (x, local)], dim=-1)
