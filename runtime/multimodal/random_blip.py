"""Random BLIP-2 (and Fuyu) checkpoints of a tiny shape, saved with their real PIL image
processors and processors over the default model's tokenizer plus the family's image token
(see random_checkpoints.py)."""

from __future__ import annotations

import torch

from .random_checkpoints import (
    IMAGE_TOKEN,
    TEXT_VOCAB,
    TINY_TEXT,
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


JANUS_TOKENS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}
JANUS_IMAGE = JANUS_TOKENS["image_token"]  # what a Janus prompt holds for an image


def save_random_janus(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    """A random Janus (understanding side): a SigLIP-style tower of 32 px images and 8 px patches
    (16 tokens an image), a 2-layer aligner into a 2-layer Llama of hidden 64, and the smallest
    VQ-VAE transformers builds (its generation side, unused here); JanusImageProcessor (32 px)
    and JanusProcessor (<begin_of_image> 16 x <image_placeholder> <end_of_image>)."""
    from transformers import (
        JanusConfig,
        JanusForConditionalGeneration,
        JanusProcessor,
        JanusVisionConfig,
        JanusVQVAEConfig,
        LlamaConfig,
    )
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    from .random_gemma import _tokenizer

    tok = _tokenizer(tokenizer_folder, JANUS_TOKENS)
    vision = JanusVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
                               mlp_ratio=2.0, projection_dim=64, depth=2, num_image_tokens=16, initializer_range=0.2)
    vq = JanusVQVAEConfig(embed_dim=4, num_embeddings=16, latent_channels=32, base_channels=32, channel_multiplier=[1],
                          num_res_blocks=1, projection_dim=64, image_token_embed_dim=64, num_hidden_layers=1)
    text = LlamaConfig(**TINY_TEXT, vocab_size=TEXT_VOCAB, max_position_embeddings=512, initializer_range=0.2,
                       bos_token_id=1, eos_token_id=2)
    config = JanusConfig(text_config=text, vision_config=vision, vq_config=vq,
                         image_token_id=tok.convert_tokens_to_ids(JANUS_IMAGE), tie_word_embeddings=False,
                         architectures=["JanusForConditionalGeneration"])
    torch.manual_seed(seed)
    JanusForConditionalGeneration(config).eval().save_pretrained(folder)
    images = JanusImageProcessorPil(size={"height": 32, "width": 32}, min_size=8)
    JanusProcessor(image_processor=images, tokenizer=tok, num_image_tokens=16).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
