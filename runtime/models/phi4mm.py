"""Phi-4-multimodal (`Phi4MultimodalForCausalLM`, transformers' port): images through a
SigLIP-style tower (layers/vision_siglip.py Idefics3VisionTower: NaViT bucket positions, padded
patches masked as keys) over the HD crops of multimodal/phi4mm_images.py, audio through a
Conformer (layers/audio_conformer.py), both projected (up, GELU, down) into a Phi-3 decoder.

An image's rows, in transformers' order: the tiles' 2x2-pooled features as one grid cut to
its real (unpadded) rows and columns, each grid row followed by the learned sub-image
separator; the global separator; the global image's pooled grid, each row followed by the
sub-image separator. An audio clip's rows are its Conformer frames, through the speech
projector, or the vision-speech one when its request also has images (as transformers picks
it per forward: `vision` in the clip's inputs, so it is part of the clip's hash).

# differs from transformers: the checkpoint's LoRA adapters (vision-lora, speech-lora) are
# PEFT adapters transformers loads apart from the model (load_adapter); the base weights are
# served as transformers' model runs without an adapter set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..layers.audio_conformer import ConformerEncoder
from ..layers.linear import Linear
from ..layers.vision_siglip import Idefics3VisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from ..multimodal.phi4mm_images import Phi4MMImageProcessor
from ..multimodal.processor import load_hf_feature_extractor
from .llama import QKV_PACKED, Phi3ForCausalLM
from .vision_language import VisionLanguageModel

MAX_AUDIO_SECONDS = 1800  # a clip's limit (the encoder takes any length, in chunks of 500 frames)


def pooled_side(mm: MultimodalConfig) -> int:
    """Pooled features per side of a crop: its patch grid (made even) halved."""
    side = mm.tower.image_size // mm.tower.patch_size
    return (side + side % 2) // 2


def real_grid(patch_mask: torch.Tensor, grid: torch.Tensor) -> tuple[int, int]:
    """(rows, cols) of the tiles' pooled grid that hold image (transformers' useful height and
    width: the patch mask at even positions, tiles side by side)."""
    rows, cols = grid.tolist()
    m = patch_mask[1:, 0::2, 0::2]  # (tiles, side, side)
    m = m.reshape(rows, cols, *m.shape[1:]).transpose(1, 2).reshape(rows * m.shape[1], cols * m.shape[2])
    return int(m[:, 0].sum()), int(m[0, :].sum())


class Phi4MMImageEmbed(nn.Module):
    """Names follow the checkpoint's `image_embed.*`."""

    def __init__(self, mm: MultimodalConfig, hidden: int) -> None:
        super().__init__()
        width = mm.tower.hidden_size
        self.mm = mm
        self.img_processor = Idefics3VisionTower(mm.tower)
        self.img_projection_up = Linear(width, hidden, bias=True)
        self.img_projection_down = Linear(hidden, hidden, bias=True)
        self.global_img_feature_extensor = nn.Parameter(torch.zeros(1, 1, width), requires_grad=False)
        self.sub_img_feature_extensor = nn.Parameter(torch.zeros(1, 1, 1, width), requires_grad=False)

    def pooled(self, pixels: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """Crops of any images: pixels (crops, 3, crop, crop), patch_mask (crops, m, m) ->
        (crops, b, b, width): the tower's feature layer, 2x2 average pooled."""
        w = self.img_projection_up.weight
        x = self.img_processor.hidden_states(pixels.to(w.device), self.mm.feature_layers,
                                             patch_mask.to(w.device))[0]  # (crops, m * m, width)
        m = round(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], m, m, -1).permute(0, 3, 1, 2)
        if m % 2:
            x = F.pad(x, (0, 1, 0, 1), mode="reflect")
        return F.avg_pool2d(x, 2).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, patch_mask: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """One image: x (1 + tiles, b, b, width) its pooled crops, patch_mask (1 + tiles, m, m),
        grid (2,) -> (tokens, hidden) in transformers' order (see the module note)."""
        b, sep = x.shape[1], self.sub_img_feature_extensor[0].to(x.dtype)  # sep (1, 1, width)
        rows, cols = grid.tolist()
        uh, uw = real_grid(patch_mask, grid)
        tiles = x[1:].reshape(rows, cols, b, b, -1).transpose(1, 2).reshape(rows * b, cols * b, -1)[:uh, :uw]
        sub = torch.cat([tiles, sep.expand(uh, 1, -1)], dim=1).flatten(0, 1)
        glob = torch.cat([x[0], sep.expand(b, 1, -1)], dim=1).flatten(0, 1)
        feats = torch.cat([sub, self.global_img_feature_extensor[0].to(x.dtype), glob])
        return self.img_projection_down(F.gelu(self.img_projection_up(feats)))


class Phi4MMAudioEmbed(nn.Module):
    """Names follow the checkpoint's `audio_embed.*`."""

    def __init__(self, mm: MultimodalConfig, hidden: int) -> None:
        super().__init__()
        width = mm.conformer.hidden_size
        self.encoder = ConformerEncoder(mm.conformer)
        self.up_proj_for_speech = Linear(width, hidden, bias=True)
        self.down_proj_for_speech = Linear(hidden, hidden, bias=True)
        self.up_proj_for_vision_speech = Linear(width, hidden, bias=True)
        self.down_proj_for_vision_speech = Linear(hidden, hidden, bias=True)

    def forward(self, features: torch.Tensor, vision: bool) -> torch.Tensor:
        """features (frames, mels) -> (subsampled frames, hidden)."""
        up, down = ((self.up_proj_for_vision_speech, self.down_proj_for_vision_speech) if vision
                    else (self.up_proj_for_speech, self.down_proj_for_speech))
        return down(F.gelu(up(self.encoder(features))))


class Phi4MultimodalForCausalLM(VisionLanguageModel):
    modalities = ("image", "audio")
    ignored_weights = (r"rotary_emb\.inv_freq", r"img_processor\.head\.")  # the unused pooling head
    renamed_weights = [(r"^model\.embed_tokens_extend\.image_embed\.", "image_embed."),
                       (r"^model\.embed_tokens_extend\.audio_embed\.", "audio_embed."),
                       (r"^model\.", "language_model.model."), (r"^lm_head\.", "language_model.lm_head."),
                       (r"(audio_embed\.encoder\.encoders\.\d+\.self_attn)\.o_proj\.", r"\1.out_proj.")]

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        mm = self.vision_config(config)
        if mm.conformer is None or mm.tower is None:
            raise ValueError(f"{config.architecture}: config.json needs vision_config and audio_config")
        self.mm = mm
        self.packed_modules = {**Phi3ForCausalLM.packed_modules, **QKV_PACKED}
        self.language_model = Phi3ForCausalLM(config, max_length)
        self.image_embed = Phi4MMImageEmbed(mm, config.hidden_size)
        self.audio_embed = Phi4MMAudioEmbed(mm, config.hidden_size)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def load_image_processor(folder: str) -> Phi4MMImageProcessor:
        return Phi4MMImageProcessor.from_folder(folder)

    @staticmethod
    def load_feature_extractor(folder: str) -> Any:
        """Phi4MultimodalFeatureExtractor (numpy / torch), with the clip limit the engine checks."""
        fe = load_hf_feature_extractor(folder)
        fe.n_samples = MAX_AUDIO_SECONDS * fe.sampling_rate
        return fe

    @staticmethod
    def image_inputs(image_processor: Phi4MMImageProcessor, image: Any, count: int) -> dict[str, torch.Tensor]:
        return image_processor(image)

    @staticmethod
    def audio_inputs(feature_extractor: Any, samples: np.ndarray) -> dict[str, torch.Tensor]:
        """input_features (frames, mels) of one clip and tokens (1,): its audio_embed_sizes."""
        out = feature_extractor(samples, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")
        return {"input_features": out["audio_input_features"][0], "tokens": out["audio_embed_sizes"].reshape(1)}

    @staticmethod
    def mark_audio(inputs: dict[str, torch.Tensor], with_images: bool) -> dict[str, torch.Tensor]:
        """A clip of a request with images takes the vision-speech projector."""
        return {**inputs, "vision": torch.tensor([int(with_images)])}

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        if modality == "audio":
            return int(inputs["tokens"][0])
        b = pooled_side(mm)
        uh, uw = real_grid(inputs["patch_mask"], inputs["grid"])
        return uh * (uw + 1) + 1 + b * (b + 1)

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: Phi4MultimodalForCausalLM does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) decoder-input rows per image or clip: every image's crops in
        one tower call, each clip through the Conformer alone (no padding)."""
        images = [it for it in items if it.modality == "image"]
        rows: dict[int, torch.Tensor] = {}
        if images:
            crops = [it.inputs["pixel_values"].shape[0] for it in images]
            pooled = self.image_embed.pooled(torch.cat([it.inputs["pixel_values"] for it in images]),
                                             torch.cat([it.inputs["patch_mask"] for it in images])).split(crops)
            for it, x in zip(images, pooled):
                rows[id(it)] = self.image_embed(x, it.inputs["patch_mask"], it.inputs["grid"])
        for it in items:
            if it.modality == "audio":
                rows[id(it)] = self.audio_embed(it.inputs["input_features"], bool(it.inputs["vision"][0]))[: it.length]
        return [rows[id(it)] for it in items]
