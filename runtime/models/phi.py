"""Phi (1, 1.5, 2) and GPT-J: parallel blocks, x + attn(ln(x)) + mlp(ln(x)) with one LayerNorm,
partial rotary, an ungated GeLU MLP and an LM head with bias.
GPT-J rotates adjacent pairs (interleaved) and has no q/k/v/out biases."""

from __future__ import annotations

from ..config import ModelConfig
from .llama import QKV_PACKED, LlamaFlags, LlamaForCausalLM


class PhiForCausalLM(LlamaForCausalLM):
    packed_modules = QKV_PACKED
    renamed_weights = [
        (r"\.self_attn\.dense\.", ".self_attn.o_proj."),
        (r"\.self_attn\.([qk])_layernorm\.", r".self_attn.\1_norm."),
        (r"\.mlp\.fc1\.", ".mlp.up_proj."),
        (r"\.mlp\.fc2\.", ".mlp.down_proj."),
        (r"^model\.final_layernorm\.", "model.norm."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer", block="parallel", gated_mlp=False, qkv_bias=True, o_bias=True,
                          mlp_bias=True, head_bias=True, qk_norm="layer" if config.hf.qk_layernorm else None)


class GPTJForCausalLM(LlamaForCausalLM):
    packed_modules = QKV_PACKED
    ignored_weights = (r"\.attn\.(masked_)?bias$",)
    renamed_weights = [
        (r"^transformer\.wte\.", "model.embed_tokens."),
        (r"^transformer\.h\.", "model.layers."),
        (r"^transformer\.ln_f\.", "model.norm."),
        (r"\.ln_1\.", ".input_layernorm."),
        (r"\.attn\.out_proj\.", ".self_attn.o_proj."),
        (r"\.attn\.", ".self_attn."),
        (r"\.mlp\.fc_in\.", ".mlp.up_proj."),
        (r"\.mlp\.fc_out\.", ".mlp.down_proj."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer", block="parallel", gated_mlp=False, interleaved_rope=True,
                          qkv_bias=False, o_bias=False, mlp_bias=True, head_bias=True)
