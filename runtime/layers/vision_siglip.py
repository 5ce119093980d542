"""The SigLIP vision tower (SiglipVisionModel's forward, without the optional pooling head):
a conv patch embedding with learned positions (no class token, no pre-norm), CLIP's pre-LN
encoder layers (gelu-tanh MLP in SigLIP's configs), and a final post-layernorm.

Used by Gemma 3, PaliGemma and LLaVA-OneVision's real checkpoints (vision_tower.*); Idefics3 and
SmolVLM take it with positions fitted to a tile's patch grid (Idefics3VisionTower)."""

from __future__ import annotations

import torch
from torch import nn

from ..multimodal.towers import VisionTowerConfig
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
    """SigLIP's patch embedding with NaViT-style positions (Idefics3VisionEmbeddings): a tile's
    real patches (hp x wp of them) read the (side x side) learned table at the buckets of their
    fractional coordinates i / hp, j / wp (the whole table in order when the tile is the
    tower's size); padded patches (Aria's pixel mask) take row 0."""

    def forward(self, pixels: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixels (tiles, channels, height, width), all of one size; patch_mask (tiles, height /
        patch, width / patch) bool, the real patches (a top-left block), None: all ->
        (tiles, patches, hidden)."""
        w = self.patch_embedding.weight
        patches = self.patch_embedding(pixels.to(w.dtype)).flatten(2).transpose(1, 2)  # (tiles, patches, hidden)
        p = self.patch_embedding.kernel_size[0]
        if patch_mask is None:
            patch_mask = torch.ones(pixels.shape[0], pixels.shape[-2] // p, pixels.shape[-1] // p, dtype=torch.bool,
                                    device=pixels.device)
        side = round(self.position_embedding.weight.shape[0] ** 0.5)
        return patches + self.position_embedding.weight[fractional_positions(patch_mask, side)]


def fractional_positions(patch_mask: torch.Tensor, side: int) -> torch.Tensor:
    """patch_mask (tiles, hp, wp) bool -> (tiles, hp * wp) table rows, with transformers' float32
    steps (so a coordinate on a bucket boundary lands in the same bucket)."""
    boundaries = torch.arange(1 / side, 1.0, 1 / side, device=patch_mask.device)
    buckets = []
    for real, n in ((patch_mask[:, :, 0].sum(1), patch_mask.shape[1]), (patch_mask[:, 0, :].sum(1), patch_mask.shape[2])):
        step = 1.0 / real  # (tiles,) float32: one over the real patches along this axis
        coords = torch.arange(n, device=patch_mask.device, dtype=torch.float32)[None, :] * step[:, None]
        buckets.append(torch.bucketize(coords.clamp(max=1.0 - 1e-6), boundaries, right=True))  # (tiles, n)
    ids = (buckets[0][:, :, None] * side + buckets[1][:, None, :]).flatten(1)
    return torch.where(patch_mask.flatten(1), ids, 0)


class Idefics3VisionTower(SiglipVisionTower):
    """Idefics3 / SmolVLM / Aria's tower (`vision_model.*`, `vision_tower.*`): SigLIP's, with
    positions per tile size and (Aria) padded patches masked as keys."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__(c)
        self.embeddings = Idefics3Embeddings(c)

    def hidden_states(self, pixels: torch.Tensor, layers: tuple[int, ...],
                      patch_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """As SiglipVisionTower's, attending only to the real patches of patch_mask."""
        keys = None if patch_mask is None else patch_mask.flatten(1)[:, None, None, :]  # (tiles, 1, 1, patches)
        return self.encoder.hidden_states(self.embeddings(pixels, patch_mask), layers, keys)


def vision_tower(c: VisionTowerConfig) -> nn.Module:
    """The tower a config names: SigLIP or CLIP."""
    from .vision import CLIPVisionTower

    return SiglipVisionTower(c) if c.kind.startswith("siglip") else CLIPVisionTower(c)
