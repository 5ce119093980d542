"""The SigLIP vision tower (SiglipVisionModel's forward, without the optional pooling head):
a conv patch embedding with learned positions (no class token, no pre-norm), CLIP's pre-LN
encoder layers (gelu-tanh MLP in SigLIP's configs), and a final post-layernorm.

Used by Gemma 3, PaliGemma and LLaVA-OneVision's real checkpoints (vision_tower.*)."""

from __future__ import annotations

import torch
from torch import nn

from ..multimodal.config import VisionTowerConfig
from .norm import LayerNorm
from .vision import CLIPEncoder


class SiglipEmbeddings(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, bias=True)
        self.patch_embedding.requires_grad_(False)
        self.position_embedding = nn.Embedding(c.num_patches, c.hidden_size)
        self.position_embedding.weight.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (images, channels, size, size) -> (images, patches, hidden); the image must be
        the tower's square (position interpolation is not supported)."""
        w = self.patch_embedding.weight
        patches = self.patch_embedding(pixels.to(w.dtype)).flatten(2).transpose(1, 2)  # (images, patches, hidden)
        if patches.shape[1] != self.position_embedding.weight.shape[0]:
            raise ValueError(f"pixel_values: {tuple(pixels.shape[-2:])} px images give {patches.shape[1]} patches; the "
                             f"SigLIP tower has positions for {self.position_embedding.weight.shape[0]}: resize to its "
                             "image_size")
        return patches + self.position_embedding.weight


class SiglipVisionTower(nn.Module):
    """Names follow the checkpoint's `vision_tower[.vision_model].*` (embeddings, encoder,
    post_layernorm); `hidden_states` numbers outputs as CLIPVisionTower does."""

    has_cls_token = False

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.config = c
        self.embeddings = SiglipEmbeddings(c)
        self.encoder = CLIPEncoder(c, c.num_layers)
        self.post_layernorm = LayerNorm(c.hidden_size, c.norm_eps)

    def hidden_states(self, pixels: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """hidden_states[i] as transformers numbers them (0: the embeddings, i: after layer i,
        negative from the end; none post-normed), for each i in layers."""
        return self.encoder.hidden_states(self.embeddings(pixels), layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(images, 3, size, size) -> (images, patches, hidden): last_hidden_state (post-normed)."""
        x = self.embeddings(pixels)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


def vision_tower(c: VisionTowerConfig) -> nn.Module:
    """The tower a config names: SigLIP or CLIP."""
    from .vision import CLIPVisionTower

    return SiglipVisionTower(c) if c.kind.startswith("siglip") else CLIPVisionTower(c)
