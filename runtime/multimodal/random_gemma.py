"""Random Gemma 3 and PaliGemma checkpoints of a tiny shape (SigLIP towers of 32 px images and
8 px patches), saved with their real PIL image processors and processors, over the default
model's tokenizer plus the family's image tokens (see random_checkpoints.py)."""

from __future__ import annotations

from typing import Any

import torch

from .random_checkpoints import IMAGE_TOKEN, TEXT_VOCAB, TINY_TEXT, _copy_chat_template, tiny_siglip

GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
GEMMA3_IMAGE = GEMMA3_TOKENS["boi_token"]  # what a Gemma 3 prompt holds for an image
GEMMA_TEXT = dict(TINY_TEXT, head_dim=16, vocab_size=TEXT_VOCAB, max_position_embeddings=1024, initializer_range=0.2,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _tokenizer(tokenizer_folder: str, tokens: dict[str, str]) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_folder, extra_special_tokens=tokens)
    tok.add_tokens(list(tokens.values()), special_tokens=True)
    return tok


def save_random_gemma3(folder: str, tokenizer_folder: str, seed: int = 0, sliding_window: int = 16) -> str:
    """A random Gemma 3: SigLIP's 4x4 patches pooled to 4 tokens an image, a two-layer Gemma 3 text
    model (a sliding-window layer of `sliding_window`, then a global one); Gemma3Processor."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tok = _tokenizer(tokenizer_folder, GEMMA3_TOKENS)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in GEMMA3_TOKENS.items()}
    text = Gemma3TextConfig(**GEMMA_TEXT, sliding_window=sliding_window,
                            layer_types=["sliding_attention", "full_attention"])
    config = Gemma3Config(text_config=text, vision_config=tiny_siglip(), mm_tokens_per_image=4,
                          boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
                          image_token_index=ids["image_token"], architectures=["Gemma3ForConditionalGeneration"])
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers initializes the projection to zeros: every image would embed alike
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, 0.2)
    model.save_pretrained(folder)
    images = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    Gemma3Processor(image_processor=images, tokenizer=tok, image_seq_length=4).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


def save_random_paligemma(folder: str, tokenizer_folder: str, seed: int = 0, version: int = 2) -> str:
    """A random PaliGemma (`version` 1: Gemma text; 2: Gemma 2) with a SigLIP tower of 16 patches
    (16 tokens an image), saved with SigLIP's PIL image processor and PaliGemmaProcessor."""
    from transformers import (
        Gemma2Config,
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
    )
    from transformers.models.paligemma.processing_paligemma import PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = _tokenizer(tokenizer_folder, {"image_token": IMAGE_TOKEN})
    text = GemmaConfig(**GEMMA_TEXT) if version == 1 else Gemma2Config(**GEMMA_TEXT, sliding_window=16)
    vision = tiny_siglip(projection_dim=text.hidden_size)
    config = PaliGemmaConfig(text_config=text, vision_config=vision, image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                             projection_dim=text.hidden_size, architectures=["PaliGemmaForConditionalGeneration"])
    torch.manual_seed(seed)
    PaliGemmaForConditionalGeneration(config).eval().save_pretrained(folder)
    images = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    images.image_seq_length = 16
    PaliGemmaProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
