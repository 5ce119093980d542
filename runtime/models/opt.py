"""OPT: learned absolute positions looked up at position + 2, pre-LayerNorm, an ungated ReLU MLP
(fc1, fc2), biases, tied head, no rope."""

from __future__ import annotations

from ..config import ModelConfig
from .llama import QKV_PACKED, LlamaFlags, LlamaForCausalLM


class OPTForCausalLM(LlamaForCausalLM):
    packed_modules = QKV_PACKED
    renamed_weights = [
        (r"^model\.decoder\.final_layer_norm\.", "model.norm."),
        (r"^model\.decoder\.", "model."),
        (r"\.self_attn\.out_proj\.", ".self_attn.o_proj."),
        (r"\.self_attn_layer_norm\.", ".input_layernorm."),
        (r"\.final_layer_norm\.", ".post_attention_layernorm."),
        (r"\.fc1\.", ".mlp.up_proj."),
        (r"\.fc2\.", ".mlp.down_proj."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        h = config.hf
        if h.word_embed_proj_dim != h.hidden_size or not h.do_layer_norm_before:
            raise NotImplementedError("OPT with word_embed_proj_dim != hidden_size or post-LayerNorm "
                                      "(opt-350m) is not supported; the other OPT sizes are")
        bias = h.enable_bias
        return LlamaFlags(norm="layer", norm_eps=1e-5, gated_mlp=False, qkv_bias=bias, o_bias=bias, mlp_bias=bias,
                          learned_positions=2)
