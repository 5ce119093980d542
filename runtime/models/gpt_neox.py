"""GPT-NeoX (Pythia) and Persimmon: LayerNorm, one fused q/k/v projection grouped per head
((heads, 3, head_dim) rows), partial rotary, an ungated MLP. GPT-NeoX runs attention and MLP in
parallel, each on its own norm of the input (use_parallel_residual); Persimmon is sequential,
with LayerNorm q/k norms and ReLU^2."""

from __future__ import annotations

from ..config import ModelConfig
from .llama import LlamaFlags, LlamaForCausalLM

_NEOX_MLP = [(r"\.mlp\.dense_h_to_4h\.", ".mlp.up_proj."), (r"\.mlp\.dense_4h_to_h\.", ".mlp.down_proj.")]


class GPTNeoXForCausalLM(LlamaForCausalLM):
    packed_modules: dict = {}
    ignored_weights = (r"rotary_emb\.inv_freq", r"\.attention\.(masked_)?bias$")
    renamed_weights = [
        (r"^gpt_neox\.embed_in\.", "model.embed_tokens."),
        (r"^gpt_neox\.final_layer_norm\.", "model.norm."),
        (r"^gpt_neox\.", "model."),
        (r"^embed_out\.", "lm_head."),
        (r"\.attention\.query_key_value\.", ".self_attn.qkv_proj."),
        (r"\.attention\.dense\.", ".self_attn.o_proj."),
        *_NEOX_MLP,
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        bias = config.hf.attention_bias
        return LlamaFlags(norm="layer", block="parallel_two_norms" if config.hf.use_parallel_residual else "pre",
                          gated_mlp=False, grouped_qkv=True, qkv_bias=bias, o_bias=bias, mlp_bias=True)


class PersimmonForCausalLM(LlamaForCausalLM):
    packed_modules: dict = {}
    renamed_weights = [
        (r"\.self_attn\.query_key_value\.", ".self_attn.qkv_proj."),
        (r"\.self_attn\.dense\.", ".self_attn.o_proj."),
        (r"\.self_attn\.([qk])_layernorm\.", r".self_attn.\1_norm."),
        (r"^model\.final_layernorm\.", "model.norm."),
        *_NEOX_MLP,
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer", gated_mlp=False, grouped_qkv=True, qkv_bias=True, o_bias=True,
                          mlp_bias=True, qk_norm="layer" if config.hf.qk_layernorm else None)
