"""A random Chameleon checkpoint of a tiny shape: a VQ-GAN over 32 px images (three levels of 32
channels, mid attention) giving an 8x8 grid of 16 codes, so 64 code tokens an image, and a
two-layer Chameleon text model; saved with ChameleonImageProcessorPil and ChameleonProcessor
over the default model's tokenizer plus <image>, <racm3:break>, <eoss> (random_checkpoints.py)."""

from __future__ import annotations

import torch

from .random_checkpoints import TEXT_VOCAB, TINY_TEXT, _copy_chat_template

CHAMELEON_CODES = 16
CHAMELEON_TOKENS = 64  # (32 px / 2 ** 2) ** 2


def _code_name(code: int) -> str:
    """IMGIMG + the code's digits written A-J + Z (transformers' ChameleonImageVocabularyMapping)."""
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


def save_random_chameleon(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    from transformers import (
        AutoTokenizer,
        ChameleonConfig,
        ChameleonForConditionalGeneration,
        ChameleonVQVAEConfig,
    )
    from transformers.models.chameleon.image_processing_pil_chameleon import (
        ChameleonImageProcessorPil,
    )
    from transformers.models.chameleon.processing_chameleon import ChameleonProcessor

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens(["<image>", "<racm3:break>", "<eoss>"], special_tokens=True)
    vocab = {name: tok.convert_tokens_to_ids(name) for name in ("<image>", "<racm3:break>", "<eoss>")}
    # the codes' tokens sit after the text vocabulary (the tokenizer never writes them)
    vocab.update({_code_name(c): TEXT_VOCAB + c for c in range(CHAMELEON_CODES)})
    vq = ChameleonVQVAEConfig(embed_dim=8, num_embeddings=CHAMELEON_CODES, latent_channels=8, resolution=32,
                              in_channels=3, base_channels=32, channel_multiplier=[1, 1, 1], num_res_blocks=1,
                              attn_resolutions=[8], initializer_range=0.2)
    config = ChameleonConfig(**TINY_TEXT, vocab_size=TEXT_VOCAB + CHAMELEON_CODES, vq_config=vq.to_dict(),
                             vocabulary_map=vocab, max_position_embeddings=1024, initializer_range=0.2,
                             bos_token_id=1, eos_token_id=2, pad_token_id=0,
                             architectures=["ChameleonForConditionalGeneration"])
    torch.manual_seed(seed)
    model = ChameleonForConditionalGeneration(config).eval()
    with torch.no_grad():  # spread the codebook so neighbouring cells pick different codes
        model.model.vqmodel.quantize.embedding.weight.normal_(0, 1.0)
    model.save_pretrained(folder)
    images = ChameleonImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ChameleonProcessor(image_processor=images, tokenizer=tok, image_seq_length=CHAMELEON_TOKENS).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
