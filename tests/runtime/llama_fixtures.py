"""Tiny Llama checkpoints for engine tests, and transformers references on them."""

from __future__ import annotations

import os
import shutil

import torch

VOCAB = 49152  # the default model's tokenizer, so prompts can be text


def save_tiny_checkpoint(config, folder: str, tokenizer_folder: str, seed: int = 0, edit=None) -> str:
    """Builds transformers' model for `config` with random weights, saves it with the default
    model's tokenizer, and returns the folder. `edit(model)` may change weights first (ones
    transformers initializes to constants, such as MoE correction biases)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if edit is not None:
        with torch.no_grad():
            edit(model)
    model.save_pretrained(folder)
    for name in os.listdir(tokenizer_folder):
        if name.startswith(("tokenizer", "special_tokens")) or name.endswith(".jinja"):
            shutil.copy(os.path.join(tokenizer_folder, name), folder)
    return folder


def tiny_llama_config(variant: str):
    from transformers import LlamaConfig

    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  max_position_embeddings=1024, initializer_range=0.2, bos_token_id=1, eos_token_id=2,
                  architectures=["LlamaForCausalLM"])
    if variant == "plain":
        return LlamaConfig(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False, **common)
    if variant == "gqa_llama3_tied_bias":
        return LlamaConfig(
            num_attention_heads=8, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
            attention_bias=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 256},
            **common)
    raise ValueError(variant)


class Reference:
    """transformers' forward on the same checkpoint: prompt logprobs and greedy continuations."""

    def __init__(self, folder: str, dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()

    @torch.inference_mode()
    def prompt_logprobs(self, ids: list[int]) -> torch.Tensor:
        """(len(ids) - 1,) logprob of each token after the first, given the ones before."""
        logits = self.model(torch.tensor([ids])).logits[0].float()
        return torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

    @torch.inference_mode()
    def greedy(self, ids: list[int], n: int) -> list[int]:
        """n argmax tokens, EOS not special: a plain loop with transformers' own KV cache."""
        out = self.model(torch.tensor([ids]), use_cache=True)
        tokens: list[int] = []
        for _ in range(n):
            tokens.append(int(out.logits[0, -1].argmax()))
            out = self.model(torch.tensor([[tokens[-1]]]), past_key_values=out.past_key_values, use_cache=True)
        return tokens
