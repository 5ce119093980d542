"""Chameleon (`ChameleonForConditionalGeneration`): images are tokens of the LM's vocabulary.
A VQ-GAN (layers/vq_chameleon.py) turns an image into codes, each code is a text id
(vocabulary_map's IMGIMG* tokens) and is embedded as text; the decoder is Llama with a
LayerNorm per head (weight and bias) on q and k.

# differs from the other vision-language families: no projector, no tower features; the
# prompt's <image> becomes <racm3:break> + the image's code tokens + <eoss> (ChameleonProcessor),
# and the head never predicts a code token (transformers masks their logits: image generation
# is out of scope here)."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.vq_chameleon import ChameleonVQVAE
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import LlamaFlags, LlamaForCausalLM
from .vision_language import VisionLanguageModel

BOI, EOI = "<racm3:break>", "<eoss>"  # ChameleonProcessor's fixed image start and end tokens


class ChameleonForConditionalGeneration(LlamaForCausalLM):
    modalities = ("image",)
    renamed_weights = [(r"^model\.vqmodel\.", "vqmodel.")]
    ignored_weights = (*LlamaForCausalLM.ignored_weights, r"vqmodel\.post_quant_conv\.")

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        if getattr(config.hf, "swin_norm", False):
            raise ValueError(f"{config.architecture}: swin_norm=true (Chameleon 30B's post-norm layers) is not "
                             "supported")
        return LlamaFlags(qk_norm="head_layer_bias")

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        self.mm = mm = VisionLanguageModel.vision_config(config)
        if mm.vq is None:
            raise ValueError(f"{config.architecture}: config.json has no vq_config / vocabulary_map")
        self.vqmodel = ChameleonVQVAE(mm.vq)
        self.register_buffer("code_ids", torch.tensor(mm.vq.code_ids), persistent=False)

    def compute_logits(self, hidden: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        logits = super().compute_logits(hidden, batch)
        logits[:, self.code_ids] = torch.finfo(logits.dtype).min  # image tokens are never predicted
        return logits

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def image_wrap(mm: MultimodalConfig, folder: str) -> tuple[list[int], list[int]]:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        ids = tok.convert_tokens_to_ids([BOI, EOI])
        if any(i is None or i == tok.unk_token_id for i in ids):
            raise ValueError(f"{folder}: the tokenizer has no {BOI} / {EOI} tokens Chameleon's images need")
        return [ids[0]], [ids[1]]

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        side = inputs["pixel_values"].shape[-1]
        if side != mm.vq.resolution:  # type: ignore[union-attr]
            raise ValueError(f"image_data: the processor gives {side} px images but vq_config.resolution is "
                             f"{mm.vq.resolution}; set crop_size to it in preprocessor_config.json")  # type: ignore[union-attr]
        return mm.vq.tokens  # type: ignore[union-attr]

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: ChameleonForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (tokens, hidden) per image: the embeddings of its code tokens."""
        device = self.code_ids.device
        codes = self.vqmodel(torch.cat([it.inputs["pixel_values"] for it in items]).to(device))  # (n, tokens)
        return list(self.model.embed_tokens(self.code_ids[codes]).unbind(0))
