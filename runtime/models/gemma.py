"""Gemma 1/2/3 (text): Llama with Gemma's RMSNorm (1 + w), a sqrt(hidden)-scaled embedding and
a GeLU-tanh gated MLP; Gemma 2 adds sandwich norms, attention and final-logit soft-capping,
query_pre_attn_scalar and alternating sliding-window layers; Gemma 3 adds per-head q/k norms and
a separate rope for the sliding-window layers (ModelConfig.sliding_rope)."""

from __future__ import annotations

from ..config import ModelConfig
from .llama import LlamaFlags, LlamaForCausalLM


class GemmaForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="gemma", embed_scale=config.hidden_size**0.5)


class Gemma2ForCausalLM(LlamaForCausalLM):
    # differs from Llama: four norms per layer; Gemma's post_attention_layernorm norms the attention
    # output (our post_self_attn_layernorm) and pre_feedforward_layernorm is our post_attention one.
    renamed_weights = [
        (r"\.post_attention_layernorm\.", ".post_self_attn_layernorm."),
        (r"\.pre_feedforward_layernorm\.", ".post_attention_layernorm."),
        (r"\.post_feedforward_layernorm\.", ".post_mlp_layernorm."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="gemma", block="sandwich", embed_scale=config.hidden_size**0.5)


class Gemma3ForCausalLM(Gemma2ForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="gemma", block="sandwich", qk_norm="head",
                          embed_scale=config.hidden_size**0.5)
