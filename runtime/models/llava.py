"""LLaVA 1.5 (`LlavaForConditionalGeneration`): a CLIP tower, the output of its feature
layer(s) without (default) or with (full) the CLS token, a two-layer projector, and a text
decoder of the Llama family whose prompt holds one row per image patch.

# differs from a text model: images reach the decoder as input embeddings at their
# placeholder positions (runtime/multimodal), computed by `encode_media`."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from ..config import ModelConfig
from ..layers.activation import get_activation
from ..layers.linear import Linear
from ..layers.vision_siglip import vision_tower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED
from .vision_language import VisionLanguageModel

# text_config.model_type -> (module, class) of the decoder
TEXT_MODELS = {"llama": ("llama", "LlamaForCausalLM"), "mistral": ("llama", "MistralForCausalLM"),
               "qwen2": ("llama", "Qwen2ForCausalLM"), "qwen3": ("llama", "Qwen3ForCausalLM"),
               "gemma": ("gemma", "GemmaForCausalLM"), "gemma2": ("gemma", "Gemma2ForCausalLM"),
               "gemma3_text": ("gemma", "Gemma3ForCausalLM"), "opt": ("opt", "OPTForCausalLM"),
               "persimmon": ("gpt_neox", "PersimmonForCausalLM"),
               "aria_text": ("moe_llama", "AriaTextForCausalLM")}


def text_model_class(config: ModelConfig) -> type[nn.Module]:
    kind = getattr(config.hf, "model_type", "llama")
    if kind not in TEXT_MODELS:
        raise ValueError(f"{config.architecture}: text model type {kind!r} is not supported; supported: "
                         f"{sorted(TEXT_MODELS)}")
    module, name = TEXT_MODELS[kind]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


class MultimodalProjector(nn.Module):
    def __init__(self, in_features: int, hidden: int, act: str, bias: bool) -> None:
        super().__init__()
        self.linear_1 = Linear(in_features, hidden, bias=bias)
        self.act = get_activation(act)
        self.linear_2 = Linear(hidden, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class LlavaForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)
    # checkpoints spell the parts three ways (llava-hf's, transformers 5's and its saved form):
    # vision_tower[.vision_model], [model.]multi_modal_projector, language_model.model / model.language_model
    # a SigLIP tower's pooling head is not used by LLaVA
    ignored_weights = (*VisionLanguageModel.ignored_weights, r"vision_tower\.(vision_model\.)?head\.")
    renamed_weights = [(r"^model\.vision_tower\.", "vision_tower."), (r"^vision_tower\.vision_model\.", "vision_tower."),
                       (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
                       (r"^model\.language_model\.", "language_model.model."), (r"^lm_head\.", "language_model.lm_head.")]

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        text_cls = text_model_class(config)
        self.packed_modules = {**getattr(text_cls, "packed_modules", {}), **QKV_PACKED}
        self.language_model = text_cls(config, max_length)
        if mm.tower.cls_tokens == 0 and mm.select_strategy == "default":
            raise ValueError(f"{config.architecture}: vision_feature_select_strategy='default' drops a class token, "
                             "which a SigLIP tower does not have; set it to 'full' in config.json")
        self.vision_tower = vision_tower(mm.tower)  # CLIP or SigLIP
        self.multi_modal_projector = MultimodalProjector(mm.tower.hidden_size * len(mm.feature_layers),
                                                         config.hidden_size, mm.projector_act, mm.projector_bias)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        """One token per patch of the processed image (+ CLIP's class token with `full`)."""
        h, w = inputs["pixel_values"].shape[-2:]
        p = mm.tower.patch_size
        return (h // p) * (w // p) + (mm.tower.cls_tokens if mm.select_strategy == "full" else 0)

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: LlavaForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) decoder-input rows per image, all images in one tower call."""
        return list(self.image_features(torch.cat([it.inputs["pixel_values"] for it in items])).unbind(0))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(images or tiles, 3, size, size) -> (images, tokens, text hidden): the selected
        features, projected."""
        return self.multi_modal_projector(self.selected_features(pixels))

    def selected_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(images, 3, size, size) -> (images, tokens, tower hidden * feature layers): the feature
        layers' outputs, without the CLS token by default."""
        device = self.vision_tower.embeddings.patch_embedding.weight.device
        # (images, class token + patches, hidden)
        states = self.vision_tower.hidden_states(pixels.to(device), self.mm.feature_layers)
        if self.mm.select_strategy == "default":
            states = [s[:, 1:] for s in states]
        return torch.cat(states, dim=-1)



class PixtralForConditionalGeneration(LlavaForConditionalGeneration):
    """vLLM's name for LLaVA with a Pixtral tower (HF-format folders: config.json, safetensors)."""
