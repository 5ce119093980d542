"""A random Qwen2-Audio checkpoint of tiny shape, saved as the family ships: config,
safetensors, a WhisperFeatureExtractor configured small (16 mel bins, 1 s clips: 100 frames,
at most 25 audio tokens a clip), Qwen2AudioProcessor, the default model's tokenizer plus
<|AUDIO|>, <|audio_bos|>, <|audio_eos|>."""

from __future__ import annotations

import torch

from .random_checkpoints import TEXT_VOCAB, TINY_TEXT, _copy_chat_template

AUDIO_TOKENS = ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]  # ids 49152..49154
AUDIO = "<|audio_bos|><|AUDIO|><|audio_eos|>"  # one clip's placeholder in a prompt
SAMPLING_RATE = 16000


def save_random_qwen2_audio(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    from transformers import (
        AutoTokenizer,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens(AUDIO_TOKENS, special_tokens=True)
    text = dict(TINY_TEXT, model_type="qwen2", vocab_size=TEXT_VOCAB, max_position_embeddings=1024,
                initializer_range=0.2, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    audio = dict(model_type="qwen2_audio_encoder", num_mel_bins=16, encoder_layers=2, encoder_attention_heads=2,
                 encoder_ffn_dim=64, d_model=32, max_source_positions=50, initializer_range=0.2)
    config = Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=tok.convert_tokens_to_ids(AUDIO_TOKENS[0]),
                              architectures=["Qwen2AudioForConditionalGeneration"], tie_word_embeddings=False)
    torch.manual_seed(seed)
    Qwen2AudioForConditionalGeneration(config).eval().save_pretrained(folder)
    fe = WhisperFeatureExtractor(feature_size=16, sampling_rate=SAMPLING_RATE, hop_length=160, chunk_length=1, n_fft=400)
    Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
