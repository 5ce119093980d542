"""A random Mllama (Llama 3.2 Vision) checkpoint of a tiny shape: a vision model of 28 px tiles
and 7 px patches (16 patches + a class token a tile, up to 2 tiles an image), local and global
encoders, intermediate-layer features, and a 3-layer text model whose middle layer is a
cross-attention layer; saved with MllamaImageProcessorPil and MllamaProcessor over the default
model's tokenizer plus <|image|> (see random_checkpoints.py)."""

from __future__ import annotations

import torch

from .random_checkpoints import TEXT_VOCAB, TINY_TEXT, _copy_chat_template

MLLAMA_IMAGE = "<|image|>"


def save_random_mllama(folder: str, tokenizer_folder: str, seed: int = 0, max_tiles: int = 2) -> str:
    from transformers import (
        AutoTokenizer,
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens([MLLAMA_IMAGE], special_tokens=True)
    image_id = tok.convert_tokens_to_ids(MLLAMA_IMAGE)
    vision = MllamaVisionConfig(hidden_size=32, attention_heads=2, intermediate_size=64, num_hidden_layers=3,
                                num_global_layers=2, intermediate_layers_indices=[0, 2], image_size=28, patch_size=7,
                                max_num_tiles=max_tiles, vision_output_dim=32 * 3, initializer_range=0.2,
                                supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]][: 3 if max_tiles > 1 else 1])
    text = MllamaTextConfig(**{**TINY_TEXT, "num_hidden_layers": 3}, cross_attention_layers=[1], vocab_size=TEXT_VOCAB,
                            max_position_embeddings=1024, initializer_range=0.2, bos_token_id=1, eos_token_id=2,
                            pad_token_id=0, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=image_id,
                          architectures=["MllamaForConditionalGeneration"])
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers starts every gate at 0 (or pi/4): open them so each part counts
        for name, p in model.named_parameters():
            if "gate" in name:
                p.uniform_(0.5, 1.0)
    model.save_pretrained(folder)
    images = MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=max_tiles)
    MllamaProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
