"""Janus (`JanusForConditionalGeneration`), its understanding path: a SigLIP-style tower (its
post-normed last hidden state, one row per patch), an aligner MLP (`depth` linear layers, the
tower's activation between them) into the text width, and a Llama decoder. An image at the
prompt's <image_placeholder> becomes <begin_of_image>, one row per patch, <end_of_image>
(JanusProcessor's replace_image_token).

Image generation (JanusProcessor's generation_mode="image": the VQ-VAE, generation_head and
generation_aligner) is out of scope: its weights are not loaded, and a prompt that asks for an
image (one holding <begin_of_image>) is refused with an error that says so.

# differs from LLaVA: the tower's patches go through the aligner whole (no feature layer, no
# class token), and the image's rows are wrapped by begin/end-of-image tokens."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..layers.activation import get_activation
from ..layers.linear import Linear
from ..layers.vision_siglip import SiglipVisionTower
from ..multimodal.config import MultimodalConfig, VisionTowerConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED
from .llava import LlavaForConditionalGeneration, text_model_class
from .vision_language import VisionLanguageModel


class JanusAligner(nn.Module):
    """fc1 (tower width -> projection_dim), then depth - 1 x (activation, linear)."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.fc1 = Linear(c.hidden_size, c.out_hidden_size, bias=True)
        self.hidden_layers = nn.ModuleList(Linear(c.out_hidden_size, c.out_hidden_size, bias=True)
                                           for _ in range(1, c.aligner_depth))
        self.act = get_activation(c.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        for layer in self.hidden_layers:
            x = layer(self.act(x))
        return x


class JanusForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)
    image_generation_error = ("prompt: it holds <begin_of_image>, which asks Janus to generate an image "
                              "(JanusProcessor's generation_mode='image'); image generation is out of scope, only "
                              "Janus's image understanding is served: send images in image_data, one "
                              "<image_placeholder> each, and the engine adds their <begin_of_image> itself")
    # transformers 5's layout (model.vision_model, model.aligner, model.language_model, lm_head)
    # and the older one without model.; the tower's names as CLIP's layer has them
    renamed_weights = [(r"^model\.(vision_model|aligner)\.", r"\1."),
                       *LlavaForConditionalGeneration.renamed_weights,
                       (r"^vision_model\.(.*)\.self_attn\.projection_layer\.", r"vision_model.\1.self_attn.out_proj.")]
    ignored_weights = (*VisionLanguageModel.ignored_weights,
                       r"^(model\.)?(vqmodel|generation_embeddings|generation_aligner|generation_head)\.")

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        if mm.tower.qk_norm:
            raise ValueError(f"{config.architecture}: vision_config.use_qk_norm=true is not supported")
        if mm.tower.out_hidden_size != config.hidden_size:
            raise ValueError(f"{config.architecture}: vision_config.projection_dim={mm.tower.out_hidden_size} must "
                             f"equal the text hidden_size={config.hidden_size}")
        text_cls = text_model_class(config)
        self.packed_modules = {**getattr(text_cls, "packed_modules", {}), **QKV_PACKED}
        if config.tie_word_embeddings:  # a tied checkpoint may still carry the head
            self.ignored_weights = (*self.ignored_weights, r"^lm_head\.")
        self.language_model = text_cls(config, max_length)
        self.vision_model = SiglipVisionTower(mm.tower)
        self.aligner = JanusAligner(mm.tower)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def image_wrap(mm: MultimodalConfig, folder: str) -> tuple[list[int], list[int]]:
        """<begin_of_image> before an image's rows, <end_of_image> after (the tokenizer's
        boi_token / eoi_token, as JanusProcessor reads them)."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        names = [getattr(tok, "boi_token", None) or "<begin_of_image>", getattr(tok, "eoi_token", None) or "<end_of_image>"]
        ids = tok.convert_tokens_to_ids(names)
        if any(i is None or i == tok.unk_token_id for i in ids):
            raise ValueError(f"{folder}: the tokenizer has no {' / '.join(names)} tokens Janus's images need")
        return [ids[0]], [ids[1]]

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        """One row per patch of the tower's square."""
        return mm.tower.num_patches

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: JanusForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (patches, text hidden) rows per image, all images in one tower call."""
        device = self.vision_model.embeddings.patch_embedding.weight.device
        pixels = torch.cat([it.inputs["pixel_values"] for it in items]).to(device)
        return list(self.aligner(self.vision_model(pixels)).unbind(0))
