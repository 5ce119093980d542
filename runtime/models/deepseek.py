"""DeepSeek V2 and V3 (and the checkpoints built on V3: R1, Kimi K2), and MiniCPM3 (V2's
attention in a dense model with MiniCPM's scalings).

Differs from Llama: attention is Multi-head Latent Attention (layers/mla.py) over a pool of
latents (cache/kv_pool.py: MLAKVPool), with rope on a separate qk_rope_head_dim slice, rotated
in adjacent pairs; the first `first_k_dense_replace` layers have a dense MLP, the rest a
mixture of experts with shared experts (layers/moe.py). V2 routes by softmax, greedy or
group-limited (the topk_group groups with the best expert); V3 by sigmoid scores plus a
correction bias, grouped top-k (groups scored by their best two); both renormalize with
norm_topk_prob and scale the routed sum by routed_scaling_factor."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..cache.kv_pool import KVPool, MLAKVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.logits import LogitsProcessor
from ..layers.mla import MLA_PACKED, MLAConfig, MLAttention
from ..layers.moe import MoESpec, SparseMoE, expert_weight_rules
from ..layers.moe_router import RouterSpec
from ..layers.norm import RMSNorm
from ..layers.rotary import RotaryEmbedding
from .llama import GATE_UP_PACKED, LlamaMLP

TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")


def deepseek_moe_spec(hf: object, v3: bool) -> MoESpec:
    """How a DeepSeek config routes (module docstring). V3 always routes as "noaux_tc"."""
    method = "noaux_tc" if v3 else (getattr(hf, "topk_method", None) or "greedy")
    if method not in TOPK_METHODS:
        raise ValueError(f"topk_method={method!r} is not supported; use one of {TOPK_METHODS}")
    grouped = method != "greedy"
    router = RouterSpec(hf.n_routed_experts, hf.num_experts_per_tok, scoring="sigmoid" if v3 else "softmax",
                        renormalize=bool(hf.norm_topk_prob) and hf.num_experts_per_tok > 1, correction_bias=v3,
                        n_group=(hf.n_group or 1) if grouped else 1, topk_group=(hf.topk_group or 1) if grouped else 1,
                        group_score="top2_sum" if v3 else "max",
                        routed_scaling_factor=float(hf.routed_scaling_factor or 1.0))
    return MoESpec(router, hf.moe_intermediate_size, hf.hidden_act)


def is_moe_layer(hf: object, layer_id: int) -> bool:
    """DeepSeek's rule: MoE from layer first_k_dense_replace on, every moe_layer_freq-th."""
    return (getattr(hf, "n_routed_experts", None) is not None and layer_id >= hf.first_k_dense_replace
            and layer_id % (getattr(hf, "moe_layer_freq", 1) or 1) == 0)


class DeepseekDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, mla: MLAConfig, layer_id: int, rotary: RotaryEmbedding,
                 moe: MoESpec | None, residual_scale: float | None = None) -> None:
        """moe: the layer's experts, None for a dense layer; residual_scale: each sublayer's
        output is scaled by it before its residual add (MiniCPM3)."""
        super().__init__()
        c = config
        self.residual_scale = residual_scale
        self.self_attn = MLAttention(c, mla, layer_id, rotary)
        self.mlp: nn.Module
        if moe is None:
            self.mlp = LlamaMLP(c.hidden_size, c.intermediate_size, c.hidden_act, c.mlp_bias)
        else:
            shared = c.hf.n_shared_experts or 0
            self.mlp = SparseMoE(c.hidden_size, moe, shared=LlamaMLP(
                c.hidden_size, moe.intermediate * shared, c.hidden_act, c.mlp_bias) if shared else None)
        self.input_layernorm = RMSNorm(c.hidden_size, c.norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.norm_eps)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        if self.residual_scale is not None:
            x = x + self.self_attn(positions, self.input_layernorm(x), batch) * self.residual_scale
            return x + self.mlp(self.post_attention_layernorm(x)) * self.residual_scale
        x = self.self_attn(positions, self.input_layernorm(x), batch, residual=x)
        return self.mlp(self.post_attention_layernorm(x), residual=x)


class DeepseekModel(nn.Module):
    def __init__(self, config: ModelConfig, mla: MLAConfig, interleaved_rope: bool, max_length: int,
                 moe: MoESpec | None, embed_scale: float | None = None, residual_scale: float | None = None) -> None:
        super().__init__()
        c = config
        rotary = RotaryEmbedding(c.rope, mla.qk_rope_head_dim, max_length, interleaved=interleaved_rope)
        self.embed_tokens = VocabEmbedding(c.vocab_size, c.hidden_size, scale=embed_scale)
        self.layers = nn.ModuleList(
            DeepseekDecoderLayer(c, mla, i, rotary, moe if moe is not None and is_moe_layer(c.hf, i) else None,
                                 residual_scale)
            for i in range(c.num_layers))
        self.norm = RMSNorm(c.hidden_size, c.norm_eps)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        x = batch.embed(self.embed_tokens)
        for layer in self.layers:
            x = layer(batch.positions, x, batch)
        return self.norm(x)


class DeepseekV2ForCausalLM(nn.Module):
    packed_modules = {**MLA_PACKED, **GATE_UP_PACKED}
    stacked_weights = expert_weight_rules()
    renamed_weights = [(r"\.mlp\.shared_experts\.", ".mlp.shared_expert.")]
    v3 = False
    ignored_weights: tuple[str, ...] = (r"rotary_emb\.inv_freq",)
    task = "generate"

    @staticmethod
    def interleaved_rope(config: ModelConfig) -> bool:
        return True  # V2 rotates adjacent pairs (transformers: complex multiplication)

    @staticmethod
    def scales(config: ModelConfig) -> tuple[float | None, float | None]:
        """(embedding scale, residual branch scale); None: not scaled."""
        return None, None

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mla = MLAConfig.from_hf(config.hf)
        # V3 and R1 checkpoints carry multi-token-prediction layers past the last one
        # (num_nextn_predict_layers): every layer index >= num_layers is skipped, as transformers does
        kept = "|".join(str(i) for i in range(config.num_layers))
        self.ignored_weights = (*self.ignored_weights, rf"^model\.layers\.(?!(?:{kept})\.)\d+\.")
        moe = deepseek_moe_spec(config.hf, self.v3) if getattr(config.hf, "n_routed_experts", None) else None
        self.model = DeepseekModel(config, self.mla, self.interleaved_rope(config), max_length, moe,
                                   *self.scales(config))
        self.lm_head = LMHead(config.vocab_size, config.hidden_size)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.logits_processor = LogitsProcessor(scale=config.scales.logits)  # MiniCPM3: 1 / logits_scaling

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """-> (tokens, hidden) hidden states after the final norm."""
        return self.model(batch)

    def compute_logits(self, hidden: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        return self.logits_processor(hidden, self.lm_head, batch)

    def make_kv_pool(self, dtype: torch.dtype, device: torch.device) -> KVPool:
        """One latent + rope key per token and layer, not per-head keys and values."""
        return MLAKVPool(self.config.num_layers, self.mla.kv_lora_rank, self.mla.qk_rope_head_dim, dtype, device)


class DeepseekV3ForCausalLM(DeepseekV2ForCausalLM):
    """Differs from V2: rope pairs as the config's `rope_interleave` says; sigmoid grouped routing."""

    v3 = True

    @staticmethod
    def interleaved_rope(config: ModelConfig) -> bool:
        return bool(config.hf.rope_interleave)


class MiniCPM3ForCausalLM(DeepseekV2ForCausalLM):
    """DeepSeek V2's latent attention with dense MLPs. Differs: rope rotates halves, embeddings
    *= scale_emb, each sublayer's output *= scale_depth / sqrt(layers), the final hidden state
    /= hidden_size / dim_model_base (the config's `logits_scaling`, ModelConfig.scales)."""

    @staticmethod
    def interleaved_rope(config: ModelConfig) -> bool:
        return False

    @staticmethod
    def scales(config: ModelConfig) -> tuple[float | None, float | None]:
        h = config.hf
        return float(h.scale_emb), float(h.scale_depth) / math.sqrt(config.num_layers)
