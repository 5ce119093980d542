"""Random InternVL, Mistral3, LLaVA-Pixtral and Llama 4 checkpoints of tiny shape, saved as their
families ship (config, safetensors, the family's PIL image processor, the default model's
tokenizer plus the family's vision tokens, the chat template), for the tests."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from .random_checkpoints import TEXT_VOCAB, _copy_chat_template, _tiny_llama

# InternVL's tokens (ids 49152..49155 after the default model's 49152): the placeholder a prompt
# holds per image is <IMG_CONTEXT>; the processor writes <img> context * 16 * tiles </img>; per
# video <video>, written "Frame1: <img> context * 16 </img>\nFrame2: ..." (one tile a frame)
INTERN_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
INTERN_IMAGE, INTERN_VIDEO = "<IMG_CONTEXT>", "<video>"
# Pixtral's (ids 49152..49154): [IMG] per patch block, [IMG_BREAK] after each row, [IMG_END] last
PIXTRAL_TOKENS = ["[IMG]", "[IMG_BREAK]", "[IMG_END]"]
PIXTRAL_IMAGE = "[IMG]"


def save_random_internvl(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    """A random InternVL (InternViT tower of 32 px tiles, 4 px patches, pixel shuffle 0.5: 16
    tokens a tile; dynamic tiling into 1..4 tiles plus a thumbnail; Qwen2-shaped Llama text),
    saved with GotOcr2's PIL image processor and the tokenizer plus <img> </img> <IMG_CONTEXT>
    <video> (InternVLProcessor's video processor needs torchvision: none is saved)."""
    from transformers import AutoTokenizer, InternVLConfig, InternVLForConditionalGeneration
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens(INTERN_TOKENS, special_tokens=True)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=4, initializer_range=0.2, layer_scale_init_value=0.5, hidden_act="gelu")
    text = _tiny_llama().to_dict()
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
                            image_seq_length=16, downsample_ratio=0.5, tie_word_embeddings=False,
                            architectures=["InternVLForConditionalGeneration"])
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    _randomize(model, ("cls_token", "position_embeddings", "lambda_1", "lambda_2"))
    model.save_pretrained(folder)
    GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1,
                             max_patches=4).save_pretrained(folder)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


def _randomize(model: Any, names: tuple[str, ...]) -> None:
    """Parameters transformers initializes to constants (zeros, layer scale) made random, so
    the parity test can see them used."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in names:
                p.copy_(torch.randn_like(p) * 0.5)


def save_random_pixtral(folder: str, tokenizer_folder: str, family: str = "mistral3", seed: int = 0) -> str:
    """A random Mistral3 (family "mistral3": Pixtral tower of 4 px patches merged 2x2, 8 px a
    token) or LLaVA with a Pixtral tower ("llava": 8 px patches, no merge), images fitted into
    56 px, Llama text; saved with Pixtral's PIL image processor and the tokenizer plus [IMG]
    [IMG_BREAK] [IMG_END] (PixtralProcessor needs torchvision)."""
    from transformers import (
        AutoTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        PixtralVisionConfig,
    )
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens(PIXTRAL_TOKENS, special_tokens=True)
    patch, merge = (4, 2) if family == "mistral3" else (8, 1)
    vision = PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=56, patch_size=patch, initializer_range=0.2, hidden_act="silu")
    text = _tiny_llama(tie_word_embeddings=False)
    common = dict(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                  vision_feature_layer=-1, projector_hidden_act="gelu", tie_word_embeddings=False)
    if family == "mistral3":
        config = Mistral3Config(**common, spatial_merge_size=merge, multimodal_projector_bias=False,
                                architectures=["Mistral3ForConditionalGeneration"])
        cls = Mistral3ForConditionalGeneration
    else:
        config = LlavaConfig(**common, vision_feature_select_strategy="full",
                             architectures=["LlavaForConditionalGeneration"])
        cls = LlavaForConditionalGeneration
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.save_pretrained(folder)
    PixtralImageProcessorPil(size={"longest_edge": 56}, patch_size={"height": patch, "width": patch}).save_pretrained(folder)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


LLAMA4_TOKENS = ["<|image|>", "<|image_start|>", "<|image_end|>", "<|patch|>", "<|tile_x_separator|>",
                 "<|tile_y_separator|>"]
LLAMA4_IMAGE = "<|image|>"


def save_random_llama4(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    """A random Llama 4 with images: a vision tower of 32 px tiles (4 px patches, pixel
    shuffle 0.5: 16 tokens a tile), up to 4 tiles and a global one, the zoo's tiny Llama 4 text
    model (chunked, NoPE and MoE layers); saved with Llama 4's preprocessor_config.json (its
    processor needs torchvision; sgl reads it with multimodal/llama4_images.py) and the
    tokenizer plus Llama 4's image tokens."""
    from transformers import AutoTokenizer, Llama4Config, Llama4ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens(LLAMA4_TOKENS, special_tokens=True)
    ids = dict(zip(LLAMA4_TOKENS, tok.convert_tokens_to_ids(LLAMA4_TOKENS)))
    vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=4, pixel_shuffle_ratio=0.5, projector_input_dim=64, projector_output_dim=64,
                  vision_output_dim=64, initializer_range=0.2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    text = dict(vocab_size=TEXT_VOCAB, hidden_size=64, intermediate_size=32, intermediate_size_mlp=96,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
                num_experts_per_tok=1, interleave_moe_layer_step=2, no_rope_layers=[1, 0], attention_chunk_size=8,
                use_qk_norm=True, attn_temperature_tuning=True, floor_scale=4, attn_scale=0.5, max_position_embeddings=1024,
                initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = Llama4Config(vision_config=vision, text_config=text, image_token_index=ids["<|patch|>"],
                          boi_token_index=ids["<|image_start|>"], eoi_token_index=ids["<|image_end|>"],
                          tie_word_embeddings=False, architectures=["Llama4ForConditionalGeneration"])
    torch.manual_seed(seed)
    Llama4ForConditionalGeneration(config).eval().save_pretrained(folder)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "Llama4ImageProcessor", "size": {"height": 32, "width": 32},
                   "max_patches": 4, "resize_to_max_canvas": False, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                   "rescale_factor": 1 / 255}, f)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
