"""A random Phi-4-multimodal checkpoint of tiny shape (transformers' Phi4MultimodalForCausalLM
layout): a SigLIP-style tower over 28 px crops of 7 px patches (2x2 tokens a crop after the
2x2 average pool), at most 4 crops an image; a 2-block Conformer over 16 mel bins (time
reduction 8); a Phi-3 style decoder (fused qkv / gate_up, partial rotary 0.75). Saved with a
small Phi4MultimodalFeatureExtractor and the image settings (one preprocessor_config.json, as
the family ships), the default model's tokenizer plus <|image|> and <|audio|>."""

from __future__ import annotations

import json
import os

import torch

from .random_checkpoints import TEXT_VOCAB, TINY_TEXT, _copy_chat_template

IMAGE, AUDIO = "<|image|>", "<|audio|>"  # ids 49152, 49153 in the default model's tokenizer
SAMPLING_RATE = 16000
CROP, PATCH, MAX_CROPS = 28, 7, 4


def save_random_phi4mm(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    from transformers import (
        AutoTokenizer,
        Phi4MultimodalConfig,
        Phi4MultimodalFeatureExtractor,
        Phi4MultimodalForCausalLM,
    )

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens([IMAGE, AUDIO], special_tokens=True)
    image_id, audio_id = tok.convert_tokens_to_ids([IMAGE, AUDIO])
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=CROP,
                  patch_size=PATCH, crop_size=CROP, image_token_id=image_id, feature_layer=-2)
    audio = dict(hidden_size=32, intermediate_size=48, num_blocks=2, num_attention_heads=2, ext_pw_out_channel=32,
                 depthwise_separable_out_channel=32, input_size=16, nemo_conv_channels=8, bias_max_distance=40,
                 audio_token_id=audio_id)
    text = {k: v for k, v in TINY_TEXT.items()}
    config = Phi4MultimodalConfig(
        **text, vocab_size=TEXT_VOCAB, max_position_embeddings=1024, original_max_position_embeddings=1024,
        initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=TEXT_VOCAB - 1, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75},
        vision_config=vision, audio_config=audio, architectures=["Phi4MultimodalForCausalLM"])
    torch.manual_seed(seed)
    model = Phi4MultimodalForCausalLM(config).eval()
    with torch.no_grad():  # transformers initializes these to zeros / ones: random, so a wrong use shows
        ie = model.model.embed_tokens_extend.image_embed
        for p in (ie.global_img_feature_extensor, ie.sub_img_feature_extensor):
            p.normal_(0, 1)
        enc = model.model.embed_tokens_extend.audio_embed.encoder
        enc.encoder_embedding.global_mean.normal_(0, 1)
        enc.encoder_embedding.global_invstd.uniform_(0.05, 0.2)
        for layer in enc.encoders:
            layer.conv.glu.b1.normal_(0, 0.5)
            layer.conv.glu.b2.normal_(0, 0.5)
    model.save_pretrained(folder)
    fe = Phi4MultimodalFeatureExtractor(feature_size=16, sampling_rate=SAMPLING_RATE, mel_max_frequency=7690)
    settings = fe.to_dict()
    settings.update(image_processor_type="Phi4MultimodalImageProcessor", size={"height": CROP, "width": CROP},
                    patch_size=PATCH, dynamic_hd=MAX_CROPS, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    settings.pop("mel_filters", None)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump(settings, f, indent=2)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
