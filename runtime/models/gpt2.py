"""GPT-2 and GPTBigCode (StarCoder 1, SantaCoder): learned absolute positions, pre-LayerNorm,
fused q/k/v (`c_attn`), an ungated GeLU MLP, biases everywhere, tied head, no rope.
GPT-2 stores its linear weights transposed (Conv1D); GPTBigCode uses nn.Linear and multi-query
attention (one key/value head, ModelConfig.num_kv_heads)."""

from __future__ import annotations

from ..config import ModelConfig
from .llama import LlamaFlags, LlamaForCausalLM


class GPT2LMHeadModel(LlamaForCausalLM):
    packed_modules: dict = {}
    ignored_weights = (r"\.attn\.(masked_)?bias$",)
    renamed_weights = [
        (r"^transformer\.wte\.", "model.embed_tokens."),
        (r"^transformer\.wpe\.", "model.embed_positions."),
        (r"^transformer\.h\.", "model.layers."),
        (r"^transformer\.ln_f\.", "model.norm."),
        (r"\.ln_1\.", ".input_layernorm."),
        (r"\.ln_2\.", ".post_attention_layernorm."),
        (r"\.attn\.c_attn\.", ".self_attn.qkv_proj."),
        (r"\.attn\.c_proj\.", ".self_attn.o_proj."),
        (r"\.mlp\.c_fc\.", ".mlp.up_proj."),
        (r"\.mlp\.c_proj\.", ".mlp.down_proj."),
    ]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer", gated_mlp=False, qkv_bias=True, o_bias=True, mlp_bias=True,
                          learned_positions=0, conv1d=True,
                          attn_scale_by_layer=config.hf.scale_attn_by_inverse_layer_idx)


class GPTBigCodeForCausalLM(GPT2LMHeadModel):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer", gated_mlp=False, qkv_bias=True, o_bias=True, mlp_bias=True,
                          learned_positions=0)
