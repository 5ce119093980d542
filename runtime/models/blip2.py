"""BLIP-2 (`Blip2ForConditionalGeneration`): a ViT (layers/vision_blip.py), the Q-Former whose
`num_query_tokens` learned queries cross-attend to the ViT's states, a linear projection into
the text width, and a decoder-only language model (OPT). Each image is num_query_tokens rows
at its `<image>` placeholder (Blip2Processor puts them before the prompt's text, its BOS too:
a prompt that starts with `<image>` gives the same ids, `arrange_prompt`).

# differs from LLaVA: the image's rows are the Q-Former's outputs (as many as it has queries,
# whatever the image's size), not one per patch. BLIP-2 with a T5 (encoder-decoder) language
# model is refused: the engine serves decoder-only models."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ..config import ModelConfig
from ..layers.linear import Linear
from ..layers.vision_blip import BlipVisionTower, QFormer
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED
from .llava import text_model_class
from .vision_language import VisionLanguageModel, rename_text_weights

_VISION_LAYER = r"^(vision_model\.encoder\.layers\.\d+\.self_attn)"


class Blip2ForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)
    # the ViT's attention as CLIP's layer names it; the Q-Former's text-input branch is unused
    renamed_weights = [(_VISION_LAYER + r"\.qkv\.", r"\1.qkv_proj."),
                       (_VISION_LAYER + r"\.projection\.", r"\1.out_proj.")]
    ignored_weights = (*VisionLanguageModel.ignored_weights, r"^qformer\.encoder\.layer\.\d+\.(intermediate|output)\.",
                       r"^qformer\.embeddings\.")

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        mm = self.vision_config(config)
        if mm.qformer is None:
            raise ValueError(f"{config.architecture}: config.json has no qformer_config")
        if getattr(config.hf, "is_encoder_decoder", False):
            raise ValueError(f"{config.architecture}: text_config is {config.hf.model_type!r}, an encoder-decoder "
                             "language model (BLIP-2 with Flan-T5); only decoder-only ones (OPT) are served")
        # the text config's tying (Blip2Config itself has no tie_word_embeddings)
        config = dataclasses.replace(config, tie_word_embeddings=bool(getattr(config.hf, "tie_word_embeddings", False)))
        self.config, self.mm = config, mm
        self.text_cls = text_model_class(config)
        self.packed_modules = {**getattr(self.text_cls, "packed_modules", {}), **QKV_PACKED}
        if config.tie_word_embeddings:  # a tied checkpoint may still carry the head
            self.ignored_weights = (*self.ignored_weights, r"^language_model\.lm_head\.")
        self.language_model = self.text_cls(config, max_length)
        self.vision_model = BlipVisionTower(mm.tower)
        q = mm.qformer
        # the queries and the Q-Former stay float32 in every dtype (transformers' _keep_in_fp32_modules)
        self.query_tokens = nn.Parameter(torch.empty(1, q.num_query_tokens, q.hidden_size, dtype=torch.float32),
                                         requires_grad=False)
        self.qformer = QFormer(q).float()
        self.language_projection = Linear(q.hidden_size, config.hidden_size, bias=True)

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        """The text model's names under language_model.; the ViT's (1, 1, h) class embedding and
        (1, positions, h) table as CLIP's; the hub's q_bias / v_bias as one q/k/v bias (k: 0)."""
        q_bias: dict[str, torch.Tensor] = {}
        for name, t in rename_text_weights(weights, self.text_cls):
            if name.endswith("embeddings.class_embedding"):
                yield name, t.reshape(-1)
            elif name.endswith("embeddings.position_embedding"):
                yield name + ".weight", t.reshape(-1, t.shape[-1])
            elif name.endswith(".self_attn.q_bias"):
                q_bias[name.removesuffix("q_bias")] = t
            elif name.endswith(".self_attn.v_bias"):
                prefix = name.removesuffix("v_bias")
                q = q_bias.pop(prefix)
                yield prefix + "qkv.bias", torch.cat([q, torch.zeros_like(q), t])
            else:
                yield name, t

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def arrange_prompt(ids: list[int], image_token: int | None, bos: int | None) -> list[int]:
        """Blip2Processor puts an image's query tokens before the text's tokens, BOS included
        (OPT's tokenizer starts with </s>): a prompt that starts BOS <image> is <image> BOS."""
        if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == image_token:
            return [image_token, bos, *ids[2:]]
        return ids

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        assert mm.qformer is not None
        return mm.qformer.num_query_tokens

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: Blip2ForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (num_query_tokens, text hidden) rows per image, all images in one tower call."""
        device = self.query_tokens.device
        pixels = torch.cat([it.inputs["pixel_values"] for it in items]).to(device)
        states = self.vision_model(pixels)  # (images, 1 + patches, vision hidden)
        return list(self.language_projection(self.qformer(self.query_tokens, states).to(states.dtype)).unbind(0))
