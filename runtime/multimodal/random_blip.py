"""Random BLIP-2 (and Fuyu) checkpoints of a tiny shape, saved with their real PIL image
processors and processors over the default model's tokenizer plus the family's image token
(see random_checkpoints.py)."""

from __future__ import annotations

import torch

from .random_checkpoints import (
    IMAGE_TOKEN,
    TEXT_VOCAB,
    _copy_chat_template,
    tokenizer_with_vision_tokens,
)

BLIP2_IMAGE = IMAGE_TOKEN  # a BLIP-2 prompt holds <image> (id 49152) where its query rows go


def save_random_blip2(folder: str, tokenizer_folder: str, seed: int = 0, query_tokens: int = 16) -> str:
    """A random BLIP-2: a ViT of 28 px images and 7 px patches (16 patches + a class token), 2
    layers; a 2-layer Q-Former of `query_tokens` queries (cross-attention in layer 0); a 2-layer
    OPT of hidden 64; BlipImageProcessor (28 px) and Blip2Processor."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        OPTConfig,
    )
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vision = Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=28, patch_size=7, initializer_range=0.2)
    qformer = Blip2QFormerConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 initializer_range=0.2)
    text = OPTConfig(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=64,
                     vocab_size=TEXT_VOCAB, max_position_embeddings=512, init_std=0.2, bos_token_id=1, eos_token_id=2,
                     pad_token_id=0)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=query_tokens,
                         image_token_index=49152, initializer_range=0.2,
                         architectures=["Blip2ForConditionalGeneration"])
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers initializes the queries to zeros: random ones test more
        model.query_tokens.normal_(0, 1)
    model.save_pretrained(folder)
    images = BlipImageProcessorPil(size={"height": 28, "width": 28})
    Blip2Processor(image_processor=images, tokenizer=tokenizer_with_vision_tokens(tokenizer_folder),
                   num_query_tokens=query_tokens).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


FUYU_TOKENS = ["|SPEAKER|", "|NEWLINE|", "<s>", "<0x04>"]  # image patch, row end, BOS, <boa>
FUYU_IMAGE = FUYU_TOKENS[0]  # what a Fuyu prompt holds for an image


def save_random_fuyu(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    """A random Fuyu: 8 px patches (3 * 64 values each) projected into a 2-layer Persimmon of
    hidden 64 (q/k LayerNorms, half-rotary); FuyuImageProcessor fitting images into 32 x 48 px
    (at most 4 rows of 6 patches), and FuyuProcessor."""
    from transformers import FuyuConfig, FuyuForCausalLM, FuyuProcessor, PersimmonConfig
    from transformers.models.fuyu.image_processing_pil_fuyu import FuyuImageProcessorPil

    tok = tokenizer_with_vision_tokens(tokenizer_folder)
    tok.add_tokens(FUYU_TOKENS, special_tokens=True)
    text = PersimmonConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           vocab_size=TEXT_VOCAB, max_position_embeddings=512, qk_layernorm=True,
                           partial_rotary_factor=0.5, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    config = FuyuConfig(text_config=text.to_dict(), patch_size=8, image_size=48, num_channels=3,
                        image_token_id=tok.convert_tokens_to_ids(FUYU_IMAGE), initializer_range=0.2,
                        architectures=["FuyuForCausalLM"])
    torch.manual_seed(seed)
    FuyuForCausalLM(config).eval().save_pretrained(folder)
    images = FuyuImageProcessorPil(size={"height": 32, "width": 48}, patch_size={"height": 8, "width": 8})
    FuyuProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
