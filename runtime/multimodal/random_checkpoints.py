"""Random vision-language checkpoints of a chosen shape, saved as their families ship (config,
safetensors, the family's PIL image processor, a tokenizer with its vision tokens, the chat
template): what the tests, the tutorials (when no real vision model is installed) and the
multimodal benchmark load. The text side uses the default model's tokenizer."""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch

IMAGE_TOKEN = "<image>"  # LLaVA's placeholder, id 49152 after the default model's 49152 tokens
QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]  # ids 49153..49156
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
TEXT_VOCAB = 49160  # the default model's 49152 tokens, the vision tokens, padding
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)


NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64]]


def _tiny_clip(**overrides: Any) -> Any:
    """A CLIP vision config of 32 px images and 8 px patches (a 4x4 grid), 3 layers."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**{**dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                                      projection_dim=32, initializer_range=0.2, image_size=32, patch_size=8),
                               **overrides})


def _tiny_llama(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**{**TINY_TEXT, "max_position_embeddings": 1024, "initializer_range": 0.2, **overrides,
                          "vocab_size": TEXT_VOCAB, "bos_token_id": 1, "eos_token_id": 2})


def tokenizer_with_vision_tokens(tokenizer_folder: str, qwen: bool = False) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens([IMAGE_TOKEN, *(QWEN_TOKENS if qwen else [])], special_tokens=True)
    return tok


def _copy_chat_template(tokenizer_folder: str, folder: str) -> None:
    for name in os.listdir(tokenizer_folder):
        if name.endswith(".jinja") and not os.path.exists(os.path.join(folder, name)):
            shutil.copy(os.path.join(tokenizer_folder, name), folder)


def save_random_llava(folder: str, tokenizer_folder: str, seed: int = 0, strategy: str = "default",
                      feature_layer: int = -2, vision: dict | None = None, text: dict | None = None,
                      image_size: int = 32, patch_size: int = 8) -> str:
    """A random LLaVA 1.5 (CLIP tower, Llama text), tiny unless `vision` / `text` give shapes,
    saved with a CLIP image processor (image_size crops) and LlavaProcessor."""
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vision_cfg = _tiny_clip(**{**(vision or {}), "image_size": image_size, "patch_size": patch_size})
    text_cfg = _tiny_llama(**(text or {}))
    config = LlavaConfig(vision_config=vision_cfg, text_config=text_cfg, image_token_index=49152,
                         vision_feature_select_strategy=strategy, vision_feature_layer=feature_layer,
                         architectures=["LlavaForConditionalGeneration"])
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).eval().save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    LlavaProcessor(image_processor=images, tokenizer=tokenizer_with_vision_tokens(tokenizer_folder),
                   patch_size=patch_size, image_token=IMAGE_TOKEN, vision_feature_select_strategy=strategy,
                   num_additional_image_tokens=1).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


def save_random_llava_next(folder: str, tokenizer_folder: str, seed: int = 0, strategy: str = "default") -> str:
    """A random LLaVA-NeXT of tiny shape: a CLIP tower of 32 px tiles (8 px patches), canvases
    32x64, 64x32 and 64x64, saved with LLaVA-NeXT's PIL image processor and LlavaNextProcessor."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )
    from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

    pinpoints, vision, text = NEXT_PINPOINTS, _tiny_clip(), _tiny_llama()
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=49152,
                             image_grid_pinpoints=pinpoints, vision_feature_select_strategy=strategy,
                             vision_feature_layer=-2, architectures=["LlavaNextForConditionalGeneration"])
    torch.manual_seed(seed)
    LlavaNextForConditionalGeneration(config).eval().save_pretrained(folder)
    images = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                        image_grid_pinpoints=pinpoints)
    LlavaNextProcessor(image_processor=images, tokenizer=tokenizer_with_vision_tokens(tokenizer_folder),
                       patch_size=8, image_token=IMAGE_TOKEN, vision_feature_select_strategy=strategy,
                       num_additional_image_tokens=1).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


def save_random_llava_next_video(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    """A random LLaVA-NeXT-Video of tiny shape (LLaVA-NeXT's tower, canvases and image processor;
    frames pooled 2x), saved with the tokenizer plus <image> and <video> (its processor needs
    torchvision for video)."""
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    pinpoints, vision, text = NEXT_PINPOINTS, _tiny_clip(), _tiny_llama()
    tok = tokenizer_with_vision_tokens(tokenizer_folder)
    tok.add_tokens(["<video>"], special_tokens=True)
    config = LlavaNextVideoConfig(vision_config=vision, text_config=text, image_token_index=49152,
                                  video_token_index=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=pinpoints,
                                  vision_feature_select_strategy="default", vision_feature_layer=-2,
                                  spatial_pool_stride=2, spatial_pool_mode="average",
                                  architectures=["LlavaNextVideoForConditionalGeneration"])
    torch.manual_seed(seed)
    LlavaNextVideoForConditionalGeneration(config).eval().save_pretrained(folder)
    LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                               image_grid_pinpoints=pinpoints).save_pretrained(folder)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


def save_random_llava_onevision(folder: str, tokenizer_folder: str, seed: int = 0, max_tiles: int = 1,
                                siglip: bool = False) -> str:
    """A random LLaVA-OneVision of tiny shape: a CLIP tower of 32 px tiles (8 px patches; real
    ones use SigLIP), canvases up to 64x96, anyres_max_`max_tiles` (1: grids of more than one
    tile's patches shrink), Llama text; saved with OneVision's PIL image processor and the
    tokenizer plus <image> and <video> (LlavaOnevisionProcessor needs torchvision for video).
    siglip: a SigLIP tower of the same shape and the "full" strategy, as real checkpoints have."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
    )
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64], [64, 96], [96, 64]]
    vision, text = _tiny_clip(), _tiny_llama(max_position_embeddings=2048)
    if siglip:
        vision = tiny_siglip(num_hidden_layers=3)
    tok = tokenizer_with_vision_tokens(tokenizer_folder)
    tok.add_tokens(["<video>"], special_tokens=True)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_id=49152,
                                  video_token_id=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=pinpoints,
                                  vision_feature_select_strategy="full" if siglip else "default",
                                  vision_feature_layer=-2, vision_aspect_ratio=f"anyres_max_{max_tiles}",
                                  architectures=["LlavaOnevisionForConditionalGeneration"])
    torch.manual_seed(seed)
    LlavaOnevisionForConditionalGeneration(config).eval().save_pretrained(folder)
    LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints).save_pretrained(folder)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


def save_random_qwen2_vl(folder: str, tokenizer_folder: str, version: str = "2", seed: int = 0) -> str:
    """A random Qwen2-VL (version "2") or Qwen2.5-VL ("2.5": windows of 2x2 merge blocks, the
    last of its two blocks full attention) of tiny shape (4 px patches, 2x2 merge, 2-frame
    temporal patches), saved with Qwen2-VL's PIL image processor (pixel bounds 256..4096).
    (Qwen2VLProcessor itself needs torchvision for its video processor, so the folder holds the
    image processor and the tokenizer, as older Qwen2-VL checkpoints do.)"""
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = tokenizer_with_vision_tokens(tokenizer_folder, qwen=True)
    ids = tok.convert_tokens_to_ids(QWEN_TOKENS)
    text = dict(TINY_TEXT, vocab_size=TEXT_VOCAB, max_position_embeddings=1024, initializer_range=0.2,
                bos_token_id=1, eos_token_id=2,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    shape = dict(depth=2, num_heads=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                 initializer_range=0.2)
    if version == "2":
        name, vision = "Qwen2VL", dict(shape, embed_dim=32, hidden_size=64, mlp_ratio=2)
    else:
        name, vision = "Qwen2_5_VL", dict(shape, hidden_size=32, intermediate_size=64, out_hidden_size=64,
                                          window_size=16, fullatt_block_indexes=[1], tokens_per_second=4)
    config = getattr(transformers, f"{name}Config")(
        text_config=text, vision_config=vision, vision_start_token_id=ids[0], vision_end_token_id=ids[1],
        image_token_id=ids[2], video_token_id=ids[3], architectures=[f"{name}ForConditionalGeneration"])
    torch.manual_seed(seed)
    getattr(transformers, f"{name}ForConditionalGeneration")(config).eval().save_pretrained(folder)
    Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                             size={"shortest_edge": 256, "longest_edge": 4096}).save_pretrained(folder)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


# real checkpoints a tutorial uses when they are in the Hugging Face cache (images and video first)
INSTALLED_CANDIDATES = {"video": ["Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"],
                        "image": ["Qwen/Qwen2-VL-2B-Instruct", "llava-hf/llava-1.5-7b-hf"]}


def installed_or_tiny(modality: str, folder: str) -> str:
    """A vision-language checkpoint that takes `modality` ("image" or "video"): a real one from
    the Hugging Face cache when one is there, else a tiny random Qwen2-VL written to `folder`
    (it answers nonsense, fast: the program's structure is what a tutorial shows)."""
    from huggingface_hub import try_to_load_from_cache

    for repo in INSTALLED_CANDIDATES[modality]:
        cached = try_to_load_from_cache(repo, "config.json")
        if isinstance(cached, str) and os.path.exists(os.path.join(os.path.dirname(cached), "model.safetensors.index.json")):
            return os.path.dirname(cached)
    if not os.path.exists(os.path.join(folder, "config.json")):
        from ..loader import default_model_path
        from ..loader.gguf_file import converted_folder

        save_random_qwen2_vl(folder, converted_folder(default_model_path()))
    return folder


def tiny_siglip(**overrides: Any) -> Any:
    """A tiny SigLIP vision config (32 px images, 8 px patches: 16 patches), for OneVision and Gemma 3."""
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(**{**dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                        image_size=32, patch_size=8, initializer_range=0.2), **overrides})
