"""Qwen2-VL (`Qwen2VLForConditionalGeneration`) and Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`:
window attention, RMSNorm and a gated MLP in the tower, video time in the temporal positions): a native-resolution ViT (layers/vision_qwen2.py)
whose merged patches enter a Qwen2 decoder as input embeddings, and M-RoPE: every token has
(temporal, height, width) positions (multimodal/mrope.py), also for decode and cached prefixes.

# differs from a text model: images and videos are embedded at their placeholder positions
# (runtime/multimodal) by `encode_media`; rope takes 3-D positions (MRotaryEmbedding)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..config import ModelConfig
from ..layers.rotary import MRotaryEmbedding
from ..layers.vision_qwen2 import Qwen2VisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from ..multimodal.mrope import grid_thw, mrope_positions
from .llama import QKV_PACKED, Qwen2ForCausalLM
from .vision_language import VisionLanguageModel

DEFAULT_FPS = 2.0


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's frame size: both sides multiples of `factor`, the area within the bounds and
    the aspect ratio kept (the image processor's own rule, for video frames)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"video_data: an aspect ratio of {max(height, width) / min(height, width):.0f} is over 200")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def video_patches(image_processor: object, frames: np.ndarray,
                  size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """(frames, height, width, 3) uint8 -> pixel_values_videos (patches, 3 * t * p * p) and
    video_grid_thw (1, 3), laid out as Qwen2-VL's video processor does: frames resized with
    the image processor's size bounds (PIL bicubic; `size`: a family's own (height, width)),
    normalized, padded to a multiple of temporal_patch_size by repeating the last, then
    patchified block-major."""
    ip = image_processor
    p, m, tp = ip.patch_size, ip.merge_size, ip.temporal_patch_size
    h, w = size or smart_resize(frames.shape[1], frames.shape[2], p * m, ip.size["shortest_edge"], ip.size["longest_edge"])
    mean, std = np.asarray(ip.image_mean, np.float32), np.asarray(ip.image_std, np.float32)
    x = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC), np.float32) for f in frames])
    x = ((x * np.float32(ip.rescale_factor) - mean) / std).transpose(0, 3, 1, 2)  # (frames, 3, h, w)
    if x.shape[0] % tp:
        x = np.concatenate([x, np.repeat(x[-1:], tp - x.shape[0] % tp, axis=0)])
    gt, gh, gw = x.shape[0] // tp, h // p, w // p
    x = x.reshape(gt, tp, 3, gh // m, m, p, gw // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (gt, gh/m, gw/m, m, m, 3, tp, p, p)
    return {"pixel_values_videos": torch.from_numpy(np.ascontiguousarray(x).reshape(gt * gh * gw, -1)),
            "video_grid_thw": torch.tensor([[gt, gh, gw]])}


class Qwen2VLForConditionalGeneration(VisionLanguageModel):
    modalities = ("image", "video")
    # transformers 5's layout (model.visual, model.language_model) and the hub's (visual, model)
    renamed_weights = [(r"^model\.visual\.", "visual."), (r"^model\.language_model\.", "language_model.model."),
                       (r"^model\.(?!visual\.)", "language_model.model."), (r"^lm_head\.", "language_model.lm_head.")]
    text_model: type = Qwen2ForCausalLM  # the decoder (Qwen3-VL: Qwen3's)
    tower: type = Qwen2VisionTower  # the vision tower (GLM-4V: its own)

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        self.packed_modules = {**self.text_model.packed_modules, **QKV_PACKED}
        self.language_model = self.text_model(config, max_length)
        sections = config.rope.params.get("mrope_section")
        if not sections:
            raise ValueError(f"{config.architecture}: rope_parameters has no mrope_section")
        rotary = MRotaryEmbedding(config.rope, config.head_dim, max_length, list(sections),
                                  interleaved=bool(config.rope.params.get("mrope_interleaved")),
                                  pairs=self.text_model.flags(config).interleaved_rope)  # GLM-4.1V's decoder
        for layer in self.language_model.model.layers:
            layer.self_attn.rotary = rotary
        self.visual = self.tower(mm.tower)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        """One token per merge_size x merge_size block of patches."""
        grid = inputs["image_grid_thw" if modality == "image" else "video_grid_thw"]
        return int(grid.prod()) // mm.tower.merge_size**2

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: np.ndarray,
                     fps: float | None) -> dict[str, torch.Tensor]:
        """2.5 also keeps the seconds each temporal patch spans (temporal_patch_size / sampled
        fps; 2 fps, the processor's default, for frames given without a clip's timing)."""
        out = video_patches(image_processor, frames)
        if mm.tower.tokens_per_second:
            out["second_per_grid_ts"] = torch.tensor([mm.tower.temporal_patch_size / (fps or DEFAULT_FPS)])
        return out

    @staticmethod
    def mrope(mm: MultimodalConfig, length: int, items: list[MediaItem]) -> tuple[torch.Tensor, int]:
        return mrope_positions(length, items, mm.tower.merge_size, mm.tower.tokens_per_second)

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) decoder-input rows per item, all items in one tower call."""
        device = self.visual.patch_embed.proj.weight.device
        key = {"image": "pixel_values", "video": "pixel_values_videos"}
        pixels = torch.cat([it.inputs[key[it.modality]] for it in items]).to(device)
        grid = [tuple(int(v) for v in grid_thw(it).reshape(-1)) for it in items]
        rows = self.visual(pixels, grid)  # (sum of lengths, hidden)
        return list(rows.split([it.length for it in items]))


class Qwen2_5_VLForConditionalGeneration(Qwen2VLForConditionalGeneration):  # noqa: N801 (the architecture's name)
    """Qwen2-VL with 2.5's tower (MultimodalConfig.tower: window_size, full_attention_blocks,
    rms_norm, gated_mlp) and tokens_per_second in the video positions."""
