"""The SigLIP vision tower (SiglipVisionModel's forward, without the optional pooling head):
a conv patch embedding with learned positions (no class token, no pre-norm), CLIP's pre-LN
encoder layers (gelu-tanh MLP in SigLIP's configs), and a final post-layernorm.

Used by Gemma 3, PaliGemma and LLaVA-OneVision's real checkpoints (vision_tower.*); Idefics3 and
SmolVLM take it with positions fitted to a tile's patch grid (Idefics3VisionTower)."""

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


class Idefics3Embeddings(SiglipEmbeddings):
    """SigLIP's patch embedding with NaViT-style positions (Idefics3VisionEmbeddings): a tile of
    hp x wp patches reads the (side x side) learned table at the buckets of its fractional
    coordinates i / hp, j / wp (the whole table in order when the tile is the tower's size)."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (tiles, channels, height, width), all of one size -> (tiles, patches, hidden)."""
        w = self.patch_embedding.weight
        patches = self.patch_embedding(pixels.to(w.dtype)).flatten(2).transpose(1, 2)  # (tiles, patches, hidden)
        p = self.patch_embedding.kernel_size[0]
        side = round(self.position_embedding.weight.shape[0] ** 0.5)
        ids = fractional_positions(pixels.shape[-2] // p, pixels.shape[-1] // p, side, pixels.device)
        return patches + self.position_embedding.weight[ids]


def fractional_positions(hp: int, wp: int, side: int, device: torch.device) -> torch.Tensor:
    """(hp * wp,) table rows of an hp x wp patch grid, with transformers' float32 steps (so a
    coordinate on a bucket boundary lands in the same bucket)."""
    if hp > side or wp > side:
        raise ValueError(f"pixel_values: a {hp}x{wp} patch tile is larger than the tower's {side}x{side} positions; "
                         "set the image processor's max_image_size to the vision config's image_size")
    boundaries = torch.arange(1 / side, 1.0, 1 / side, device=device)
    buckets = []
    for n in (hp, wp):
        step = 1.0 / torch.tensor([n], device=device)  # float32, as transformers divides by a patch count
        coords = torch.clamp(torch.arange(n, device=device, dtype=torch.float32) * step, max=1.0 - 1e-6)
        buckets.append(torch.bucketize(coords, boundaries, right=True))
    return (buckets[0][:, None] * side + buckets[1][None, :]).flatten()


class Idefics3VisionTower(SiglipVisionTower):
    """Idefics3 / SmolVLM's tower (`model.vision_model.*`): SigLIP's, positions per tile size."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__(c)
        self.embeddings = Idefics3Embeddings(c)


def vision_tower(c: VisionTowerConfig) -> nn.Module:
    """The tower a config names: SigLIP or CLIP."""
    from .vision import CLIPVisionTower

    return SiglipVisionTower(c) if c.kind.startswith("siglip") else CLIPVisionTower(c)
