"""Qwen3-VL (`Qwen3VLForConditionalGeneration`, a Qwen3 decoder) and Qwen3-VL-MoE
(`Qwen3VLMoeForConditionalGeneration`, a Qwen3-MoE decoder): Qwen2-VL's path (qwen2_vl.py)
with Qwen3-VL's tower (layers/vision_qwen2.py: learned interpolated positions, DeepStack
mergers), interleaved M-RoPE (MRotaryEmbedding(interleaved=True), from rope_parameters'
mrope_interleaved) and videos written as their frames, each after its timestamp.

# differs from Qwen2-VL:
# - DeepStack: the tower's rows carry, beside the decoder-input columns, one block of columns
#   per DeepStack layer; after decoder layer i those columns of block i are added to the
#   hidden states at the media rows. The rows travel as input embeddings (embed_media takes
#   only the chunk's rows of each item), so chunked prefill and a cached prefix add exactly
#   the rows the forward computes, and the encoder cache holds them with the item.
# - a video is one item per temporal patch (its own (1, h, w) grid), each preceded in the
#   prompt by "<t seconds><|vision_start|>" as Qwen3VLProcessor writes it; the tower attends
#   within a frame, so frames encoded apart equal the whole video's rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..forward_batch import ForwardBatch
from ..multimodal.config import MultimodalConfig
from .llama import Qwen3ForCausalLM
from .moe_llama import Qwen3MoeForCausalLM
from .qwen2_vl import Qwen2VLForConditionalGeneration, video_patches

PRESAMPLED_FPS = 24.0  # Qwen3VLProcessor's clock for frames given without a video's timing


def frame_seconds(num_frames: int, fps: float, temporal_patch_size: int) -> list[float]:
    """Each temporal patch's time: the mean of its first and last frame's (idx / fps), the
    last frame repeated to fill the final patch (Qwen3VLProcessor._calculate_timestamps)."""
    idx = list(range(num_frames))
    idx += [idx[-1]] * (-len(idx) % temporal_patch_size)
    t = [i / fps for i in idx]
    return [(t[i] + t[i + temporal_patch_size - 1]) / 2 for i in range(0, len(t), temporal_patch_size)]


class Qwen3VLForConditionalGeneration(Qwen2VLForConditionalGeneration):
    text_model = Qwen3ForCausalLM
    renamed_weights = [*Qwen2VLForConditionalGeneration.renamed_weights,
                       (r"^visual\.blocks\.(\d+)\.mlp\.linear_fc", r"visual.blocks.\1.mlp.fc"),
                       (r"^visual\.deepstack_merger_list\.", "visual.deepstack_mergers."),
                       (r"^visual\.(merger|deepstack_mergers\.\d+)\.norm\.", r"visual.\1.ln_q."),
                       (r"^visual\.(merger|deepstack_mergers\.\d+)\.linear_fc1\.", r"visual.\1.mlp.0."),
                       (r"^visual\.(merger|deepstack_mergers\.\d+)\.linear_fc2\.", r"visual.\1.mlp.2.")]

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: np.ndarray,
                     fps: float | None) -> dict[str, torch.Tensor]:
        """Qwen2-VL's patches, and each temporal patch's time on the sampled clip's clock
        (frame j at j / fps; 24 fps for frames given as images, as the processor assumes)."""
        out = video_patches(image_processor, frames)
        seconds = frame_seconds(len(frames), fps or PRESAMPLED_FPS, mm.tower.temporal_patch_size)
        return {**out, "frame_seconds": torch.tensor(seconds, dtype=torch.float64)}

    @staticmethod
    def split_video(mm: MultimodalConfig, inputs: dict[str, torch.Tensor]) -> list[str | dict[str, torch.Tensor]]:
        """A video's prompt parts: per temporal patch "<t seconds><|vision_start|>", its
        frame item, "<|vision_end|>" (the prompt's own start/end tokens wrap them all)."""
        t, h, w = (int(v) for v in inputs["video_grid_thw"].reshape(-1))
        pixels = inputs["pixel_values_videos"].view(t, h * w, -1)
        parts: list[str | dict[str, torch.Tensor]] = []
        for f, sec in enumerate(inputs["frame_seconds"].tolist()):
            parts.append(f"<{sec:.1f} seconds><|vision_start|>")
            parts.append({"pixel_values_videos": pixels[f], "video_grid_thw": torch.tensor([[1, h, w]])})
            parts.append("<|vision_end|>")
        return parts

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """The decoder, with each media row's DeepStack columns added after the early layers."""
        lm = self.language_model.model
        hidden = self.config.hidden_size
        x = lm.embed_tokens(batch.input_ids)
        deep = None
        if batch.embed_index is not None:
            rows = batch.embed_rows.to(x.dtype)  # (media rows, hidden * (1 + DeepStack layers))
            x = x.index_copy(0, batch.embed_index, rows[:, :hidden])
            if rows.shape[1] > hidden:
                deep = rows[:, hidden:].unflatten(1, (-1, hidden))  # (media rows, layers, hidden)
        positions = batch.positions if batch.mrope_positions is None else batch.mrope_positions
        for i, layer in enumerate(lm.layers):
            x = layer(positions, x, batch)
            if deep is not None and i < deep.shape[1]:
                x = x.index_add(0, batch.embed_index, deep[:, i])
        return lm.norm(x)


class Qwen3VLMoeForConditionalGeneration(Qwen3VLForConditionalGeneration):
    """Qwen3-VL over a Qwen3-MoE decoder (softmax top-k experts; layers/moe.py). The hub's
    experts are stacked and transposed: gate_up_proj (E, H, 2I) gate half first, down_proj
    (E, I, H)."""

    text_model = Qwen3MoeForCausalLM
    stacked_weights = Qwen3MoeForCausalLM.stacked_weights  # per-expert tensors, where a checkpoint has them
    features = Qwen3MoeForCausalLM.features

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        """Stacked expert tensors into layers/moe.py's (E, 2I, H) w13 and (E, H, I) w2,
        transposed where the tensor is in the hub's layout (transformers' own check: by shape;
        save_pretrained writes ours)."""
        h, inner = self.config.hidden_size, self.config.hf.moe_intermediate_size
        ours = {"experts.gate_up_proj": ("experts.w13_weight", (2 * inner, h)),
                "experts.down_proj": ("experts.w2_weight", (h, inner))}
        for name, t in weights:
            leaf = next((k for k in ours if name.endswith(k)), None)
            if leaf is None:
                yield name, t
                continue
            target, shape = ours[leaf]
            yield name[: -len(leaf)] + target, t if tuple(t.shape[1:]) == shape else t.transpose(1, 2).contiguous()
