"""Falcon: LayerNorm, rotary, a fused q/k/v projection, an ungated GeLU MLP, tied head.

Three block layouts, chosen by the config (ModelConfig.num_kv_heads already reflects them):
- new_decoder_architecture (40B/180B): grouped-query, q/k/v rows grouped per kv head, attention
  and MLP in parallel on their own norms (ln_attn, ln_mlp) or on one (num_ln_in_parallel_attn=1);
- parallel_attn (7B): multi-query, attention and MLP in parallel on one norm;
- neither: sequential, like Llama with LayerNorm."""

from __future__ import annotations

from ..config import ModelConfig
from .llama import LlamaFlags, LlamaForCausalLM


class FalconForCausalLM(LlamaForCausalLM):
    packed_modules: dict = {}
    renamed_weights = [
        (r"^transformer\.word_embeddings\.", "model.embed_tokens."),
        (r"^transformer\.h\.", "model.layers."),
        (r"^transformer\.ln_f\.", "model.norm."),
        (r"\.self_attention\.query_key_value\.", ".self_attn.qkv_proj."),
        (r"\.self_attention\.dense\.", ".self_attn.o_proj."),
        (r"\.ln_attn\.", ".input_layernorm."),
        (r"\.ln_mlp\.", ".post_attention_layernorm."),
        (r"\.mlp\.dense_h_to_4h\.", ".mlp.up_proj."),
        (r"\.mlp\.dense_4h_to_h\.", ".mlp.down_proj."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        h = config.hf
        if h.alibi:
            raise NotImplementedError("Falcon with alibi=True (falcon-rw) is not supported; the rotary "
                                      "Falcon models (7B, 40B, 180B, Falcon 2/3 dense) are")
        if h.new_decoder_architecture:
            block = "parallel_two_norms" if (h.num_ln_in_parallel_attn or 2) == 2 else "parallel"
        else:
            block = "parallel" if h.parallel_attn else "pre"
        grouped = h.new_decoder_architecture or not h.multi_query  # multi-query rows are [q..., k, v]
        return LlamaFlags(norm="layer", block=block, gated_mlp=False, grouped_qkv=grouped,
                          qkv_bias=h.bias, o_bias=h.bias, mlp_bias=h.bias)
