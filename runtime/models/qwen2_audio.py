"""Qwen2-Audio (`Qwen2AudioForConditionalGeneration`): a Whisper-style audio encoder
(layers/audio_whisper.py) over the log-mel features of WhisperFeatureExtractor, a linear
projector, and a Qwen2 decoder whose prompt holds one row per pooled audio frame at the
`<|AUDIO|>` placeholder (between `<|audio_bos|>` and `<|audio_eos|>` in its prompts).

# differs from a text model: audio reaches the decoder as input embeddings at its
# placeholder positions (runtime/multimodal), computed by `encode_media`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..layers.audio_whisper import WhisperAudioTower, conv_lengths
from ..layers.linear import Linear
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED, Qwen2ForCausalLM
from .vision_language import VisionLanguageModel

_LAYER = r"(audio_tower\.layers\.\d+)"


class Qwen2AudioForConditionalGeneration(VisionLanguageModel):
    modalities = ("audio",)
    audio_wrap = ("<|audio_bos|>", "<|audio_eos|>")  # the placeholder's text around <|AUDIO|>
    # transformers 5's layout (model.audio_tower, model.language_model) and the hub's
    # (audio_tower, language_model.model); Whisper's layer names -> the CLIP layer's
    renamed_weights = [(r"^model\.audio_tower\.", "audio_tower."),
                       (r"^model\.multi_modal_projector\.linear\.", "multi_modal_projector."),
                       (r"^multi_modal_projector\.linear\.", "multi_modal_projector."),
                       (r"^model\.language_model\.", "language_model.model."), (r"^lm_head\.", "language_model.lm_head."),
                       (_LAYER + r"\.self_attn_layer_norm\.", r"\1.layer_norm1."),
                       (_LAYER + r"\.final_layer_norm\.", r"\1.layer_norm2."),
                       (_LAYER + r"\.fc([12])\.", r"\1.mlp.fc\2.")]

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        mm = config.multimodal
        if mm is None or mm.audio is None:
            raise ValueError(f"{config.architecture}: config.json has no audio_config / audio_token_index")
        self.mm = mm
        self.packed_modules = {**Qwen2ForCausalLM.packed_modules, **QKV_PACKED}
        self.language_model = Qwen2ForCausalLM(config, max_length)
        self.audio_tower = WhisperAudioTower(mm.audio)
        self.multi_modal_projector = Linear(mm.audio.hidden_size, config.hidden_size, bias=True)

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        """Whisper's attention has no k_proj bias: a zero one for the fused q/k/v bias."""
        for name, t in weights:
            yield name, t
            if "audio_tower.layers." in name and name.endswith("self_attn.k_proj.weight"):
                yield name.removesuffix("weight") + "bias", torch.zeros(t.shape[0], dtype=t.dtype)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def audio_inputs(feature_extractor: Any, samples: np.ndarray) -> dict[str, torch.Tensor]:
        """One clip -> input_features (1, mels, frames: padded to the processor's length) and
        feature_attention_mask (1, frames), as Qwen2AudioProcessor calls the extractor."""
        out = feature_extractor(samples, sampling_rate=feature_extractor.sampling_rate, return_attention_mask=True,
                                padding="max_length", return_tensors="pt")
        return {"input_features": out["input_features"], "feature_attention_mask": out["attention_mask"]}

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        """One token per pooled frame of the clip's real (unpadded) mel frames."""
        return int(conv_lengths(inputs["feature_attention_mask"].sum(-1))[1])

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: Qwen2AudioForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) decoder-input rows per clip, all clips in one encoder call."""
        features = torch.cat([it.inputs["input_features"] for it in items])
        frames = torch.cat([it.inputs["feature_attention_mask"].sum(-1) for it in items])
        rows = self.multi_modal_projector(self.audio_tower(features, frames))  # (clips, positions, hidden)
        return [r[: it.length] for r, it in zip(rows, items)]
