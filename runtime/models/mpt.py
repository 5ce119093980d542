"""MPT: ALiBi (slopes from alibi_bias_max), fused q/k/v (`Wqkv`) optionally clamped (clip_qkv),
LayerNorm without bias, an ungated exact-GeLU MLP, no biases, tied head."""

from __future__ import annotations

from ..config import ModelConfig
from ..layers.attention import mpt_alibi_slopes
from .llama import LlamaFlags, LlamaForCausalLM


class MptForCausalLM(LlamaForCausalLM):
    packed_modules: dict = {}
    renamed_weights = [
        (r"^transformer\.wte\.", "model.embed_tokens."),
        (r"^transformer\.blocks\.", "model.layers."),
        (r"^transformer\.norm_f\.", "model.norm."),
        (r"\.norm_1\.", ".input_layernorm."),
        (r"\.norm_2\.", ".post_attention_layernorm."),
        (r"\.attn\.Wqkv\.", ".self_attn.qkv_proj."),
        (r"\.attn\.out_proj\.", ".self_attn.o_proj."),
        (r"\.ffn\.", ".mlp."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        h, attn = config.hf, config.hf.attn_config
        if not attn.alibi or attn.qk_ln or attn.prefix_lm:
            raise NotImplementedError("MPT without ALiBi, or with qk_ln or prefix_lm, is not supported")
        bias = not h.no_bias
        return LlamaFlags(norm="layer" if bias else "layer_nobias", gated_mlp=False, hidden_act="gelu",
                          qkv_bias=bias, o_bias=bias, mlp_bias=bias,
                          alibi_slopes=tuple(mpt_alibi_slopes(config.num_heads, attn.alibi_bias_max).tolist()))
