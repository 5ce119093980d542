"""BLOOM: ALiBi instead of positions, a LayerNorm right after the embedding, q/k/v fused and
grouped per head ((heads, 3, head_dim) rows), a GeLU-tanh MLP, biases, tied head."""

from __future__ import annotations

from ..config import ModelConfig
from ..layers.attention import alibi_slopes
from .llama import LlamaFlags, LlamaForCausalLM


class BloomForCausalLM(LlamaForCausalLM):
    packed_modules: dict = {}
    renamed_weights = [
        (r"^transformer\.word_embeddings\.", "model.embed_tokens."),
        (r"^transformer\.word_embeddings_layernorm\.", "model.embed_norm."),
        (r"^transformer\.h\.", "model.layers."),
        (r"^transformer\.ln_f\.", "model.norm."),
        (r"\.self_attention\.query_key_value\.", ".self_attn.qkv_proj."),
        (r"\.self_attention\.dense\.", ".self_attn.o_proj."),
        (r"\.mlp\.dense_h_to_4h\.", ".mlp.up_proj."),
        (r"\.mlp\.dense_4h_to_h\.", ".mlp.down_proj."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        if config.hf.apply_residual_connection_post_layernorm:
            raise NotImplementedError("BLOOM with apply_residual_connection_post_layernorm is not supported")
        return LlamaFlags(norm="layer", gated_mlp=False, hidden_act="gelu_pytorch_tanh", grouped_qkv=True,
                          qkv_bias=True, o_bias=True, mlp_bias=True, embed_norm=True,
                          alibi_slopes=tuple(alibi_slopes(config.num_heads).tolist()))
