"""GLM-4.1V (`Glm4vForConditionalGeneration`: a GLM-4 decoder, sandwich norms, adjacent-pair
rope) and GLM-4.5V (`Glm4vMoeForConditionalGeneration`: the GLM-4.5 MoE decoder): Qwen2-VL's
path (qwen2_vl.py: merged patches as input embeddings at their placeholders, M-RoPE with
contiguous sections) with GLM's tower (layers/vision_glm4v.py).

# differs from Qwen2-VL:
# - prompts write an image as <|begin_of_image|><|image|><|end_of_image|>; a video as
#   <|begin_of_video|><|video|><|end_of_video|>, whose <|video|> Glm4vProcessor replaces by
#   each temporal patch as "<|begin_of_image|>" + its tokens + "<|end_of_image|>" + the whole
#   seconds of its first frame. Each temporal patch is one item with a (1, h, w) grid
#   (split_video), so M-RoPE numbers the frames as transformers' get_rope_index does.
# - videos are resized by the video processor's own rule (Glm4vVideoProcessor needs
#   torchvision; its rule is ported here): the area bound counts all frames."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..layers.vision_glm4v import Glm4vVisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.processor import load_hf_image_processor
from .llama import Glm4ForCausalLM, LlamaFlags
from .moe_llama import Glm4MoeForCausalLM
from .qwen2_vl import Qwen2VLForConditionalGeneration, video_patches
from .qwen3_vl import PRESAMPLED_FPS, Qwen3VLMoeForConditionalGeneration

# Glm4vVideoProcessor's default size bounds (pixels of all frames together)
VIDEO_SIZE = {"shortest_edge": 112 * 112, "longest_edge": 28 * 28 * 2 * 30000}


def video_size(num_frames: int, height: int, width: int, temporal: int, factor: int, min_pixels: int,
               max_pixels: int) -> tuple[int, int]:
    """Glm4vVideoProcessor's resize: sides multiples of `factor` (a side under it scaled up
    first), the frames' total area (frames rounded to `temporal`) within the bounds."""
    if num_frames < temporal:
        raise ValueError(f"video_data: {num_frames} frame(s); GLM-4V needs at least {temporal}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"video_data: an aspect ratio of {max(height, width) / min(height, width):.0f} is over 200")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    t = round(num_frames / temporal) * temporal
    if t * h * w > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif t * h * w < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


class Glm4vTextForCausalLM(Glm4ForCausalLM):
    """GLM-4.1V's decoder: GLM-4's, with q/k/v biases always (its text config has no attention_bias)."""

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(interleaved_rope=True, qkv_bias=True, o_bias=False, block="sandwich")


class Glm4vForConditionalGeneration(Qwen2VLForConditionalGeneration):
    text_model: type = Glm4vTextForCausalLM
    renamed_weights = [*Qwen2VLForConditionalGeneration.renamed_weights,
                       (r"^visual\.merger\.(gate_proj|up_proj|down_proj)\.", r"visual.merger.mlp.\1.")]
    tower = Glm4vVisionTower
    # the prompt text of one image / video (chat templates and OpenAI parts write these)
    placeholders = {"image": "<|begin_of_image|><|image|><|end_of_image|>",
                    "video": "<|begin_of_video|><|video|><|end_of_video|>"}

    @staticmethod
    def load_image_processor(folder: str) -> Any:
        """The folder's PIL image processor, holding the video processor's size bounds
        (video_preprocessor_config.json's, else Glm4vVideoProcessor's defaults) for video_inputs."""
        ip = load_hf_image_processor(folder)
        path = os.path.join(folder, "video_preprocessor_config.json")
        size = VIDEO_SIZE
        if os.path.exists(path):
            with open(path) as f:
                size = json.load(f).get("size") or VIDEO_SIZE
        ip.video_size = dict(size)
        return ip

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: Any, frames: np.ndarray,
                     fps: float | None) -> dict[str, torch.Tensor]:
        """Qwen2-VL's patches of frames resized by the video rule, and each temporal patch's
        whole seconds: its first frame's index / fps (24 fps for frames given as images, as
        Glm4vProcessor assumes)."""
        ip, t = image_processor, mm.tower.temporal_patch_size
        bounds = getattr(ip, "video_size", VIDEO_SIZE)
        size = video_size(len(frames), frames.shape[1], frames.shape[2], t, ip.patch_size * ip.merge_size,
                          bounds["shortest_edge"], bounds["longest_edge"])
        out = video_patches(ip, frames, size)
        seconds = [int(i / (fps or PRESAMPLED_FPS)) for i in range(0, len(frames), t)]
        return {**out, "frame_seconds": torch.tensor(seconds, dtype=torch.int64)}

    @staticmethod
    def split_video(mm: MultimodalConfig, inputs: dict[str, torch.Tensor]) -> list[str | dict[str, torch.Tensor]]:
        """A video's prompt parts: per temporal patch "<|begin_of_image|>", its frame item,
        "<|end_of_image|>" and its seconds (the prompt's own video tokens wrap them all)."""
        t, h, w = (int(v) for v in inputs["video_grid_thw"].reshape(-1))
        pixels = inputs["pixel_values_videos"].view(t, h * w, -1)
        parts: list[str | dict[str, torch.Tensor]] = []
        for f, sec in enumerate(inputs["frame_seconds"].tolist()):
            parts += ["<|begin_of_image|>", {"pixel_values_videos": pixels[f], "video_grid_thw": torch.tensor([[1, h, w]])},
                      f"<|end_of_image|>{sec}"]
        return parts


class Glm4vMoeForConditionalGeneration(Glm4vForConditionalGeneration):
    """GLM-4.1V's tower and prompts over the GLM-4.5 MoE decoder (sigmoid grouped routing,
    shared expert, the first layers dense, rotate-half rope: flags of Glm4MoeForCausalLM).
    Its experts are stacked as Qwen3-VL-MoE's (transformers 5's layout)."""

    text_model = Glm4MoeForCausalLM
    renamed_weights = [*Glm4vForConditionalGeneration.renamed_weights, *Glm4MoeForCausalLM.renamed_weights]
    stacked_weights = Glm4MoeForCausalLM.stacked_weights
    features = Glm4MoeForCausalLM.features
    transform_weights = Qwen3VLMoeForConditionalGeneration.transform_weights
