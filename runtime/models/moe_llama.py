"""Mixture-of-Experts families that are a Llama-shaped decoder with MoE feed-forwards:
Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, Granite-MoE (+ shared), PhiMoE, ERNIE 4.5 MoE, GLM-4.5, Aria's text model.

Each says, on top of its `LlamaFlags`, how it routes (`moe_spec`), which layers are MoE
(`is_moe_layer`: dense first layers, sparse steps, mlp_only_layers), its shared expert, and
how its checkpoint names the experts (`stacked_weights`, `renamed_weights`); the layer is
runtime/layers/moe.py."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..layers.moe import MoESpec, SparseMoE, expert_weight_rules
from ..layers.moe_router import RouterSpec
from .llama import LlamaFlags, LlamaForCausalLM, LlamaMLP


def hf_field(hf: Any, *names: str, default: Any = None) -> Any:
    """The first of `names` the config sets (families spell expert counts differently)."""
    for name in names:
        value = getattr(hf, name, None)
        if value is not None:
            return value
    return default


def num_experts(hf: Any) -> int:
    return int(hf_field(hf, "num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"))


def experts_per_token(hf: Any) -> int:
    return int(hf_field(hf, "num_experts_per_tok", "moe_k", "top_k"))


class MoEForCausalLM(LlamaForCausalLM):
    """A Llama-shaped decoder whose MoE layers' MLP is a `SparseMoE` (experts named
    `mlp.experts.<e>.{gate,up,down}_proj` unless a family says otherwise)."""

    stacked_weights = expert_weight_rules()
    features: tuple[str, ...] = ("MoE",)  # docs/models.md's layers column

    def moe_spec(self) -> MoESpec:
        """How this family routes and what its experts compute (from self.config)."""
        raise NotImplementedError(f"{type(self).__name__} must define moe_spec")

    def is_moe_layer(self, layer_id: int) -> bool:
        return True

    def shared_expert(self) -> nn.Module | None:
        """The shared expert every token also runs, or None."""
        return None

    def dense_mlp(self, intermediate: int) -> LlamaMLP:
        c = self.config
        return LlamaMLP(c.hidden_size, intermediate, c.hidden_act, c.mlp_bias)

    def make_mlp(self, layer_id: int) -> nn.Module | None:
        if not self.is_moe_layer(layer_id):
            return None  # the dense MLP of config.intermediate_size
        return SparseMoE(self.config.hidden_size, self.moe_spec(), self.shared_expert())


class MixtralForCausalLM(MoEForCausalLM):
    """Softmax top-k, renormalized; experts w1 (gate), w3 (up), w2 (down)."""

    renamed_weights = [(r"\.block_sparse_moe\.", ".mlp.")]
    stacked_weights = expert_weight_rules("w1", "w3", "w2")

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), renormalize=True),
                       self.config.intermediate_size, self.config.hidden_act)


class Qwen3MoeForCausalLM(MoEForCausalLM):
    """Softmax top-k (norm_topk_prob), per-head q/k norms; dense layers: mlp_only_layers and
    those off decoder_sparse_step."""

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(qk_norm="head")

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), renormalize=bool(h.norm_topk_prob)),
                       h.moe_intermediate_size, self.config.hidden_act, shared_gate=self.has_shared_gate)

    has_shared_gate = False

    def is_moe_layer(self, layer_id: int) -> bool:
        h = self.config.hf
        step = getattr(h, "decoder_sparse_step", 1) or 1
        return layer_id not in (getattr(h, "mlp_only_layers", None) or []) and (layer_id + 1) % step == 0


class Qwen2MoeForCausalLM(Qwen3MoeForCausalLM):
    """Qwen3-MoE's routing with q/k/v biases instead of q/k norms, and a shared expert whose
    output is scaled by sigmoid(shared_expert_gate(x))."""

    has_shared_gate = True

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(qkv_bias=True, o_bias=False)

    def shared_expert(self) -> nn.Module | None:
        size = getattr(self.config.hf, "shared_expert_intermediate_size", 0)
        return self.dense_mlp(size) if size else None


class OlmoeForCausalLM(MoEForCausalLM):
    """Softmax top-k (norm_topk_prob); q/k RMS-normed over all heads, then clip_qkv."""

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(qk_norm="full", clip_after_qk_norm=True)

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), renormalize=bool(h.norm_topk_prob)),
                       self.config.intermediate_size, self.config.hidden_act)


class GraniteMoeForCausalLM(MoEForCausalLM):
    """Granite's multipliers; top-k logits then softmax; experts stored stacked
    (input_linear (E, 2I, H) = gate rows then up rows, output_linear (E, H, I))."""

    renamed_weights = [(r"\.block_sparse_moe\.router\.layer\.", ".mlp.gate."),
                       (r"\.block_sparse_moe\.input_linear\.weight", ".mlp.experts.w13_weight"),
                       (r"\.block_sparse_moe\.output_linear\.weight", ".mlp.experts.w2_weight"),
                       (r"\.shared_mlp\.input_linear\.", ".mlp.shared_expert.gate_up_proj."),
                       (r"\.shared_mlp\.output_linear\.", ".mlp.shared_expert.down_proj.")]
    stacked_weights: list = []

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), scoring="topk_softmax"),
                       self.config.intermediate_size, self.config.hidden_act)


class GraniteMoeSharedForCausalLM(GraniteMoeForCausalLM):
    """Granite-MoE with a shared MLP beside the experts (summed with them)."""

    def shared_expert(self) -> nn.Module | None:
        size = getattr(self.config.hf, "shared_intermediate_size", 0)
        return self.dense_mlp(size) if size else None


class PhimoeForCausalLM(MixtralForCausalLM):
    """Mixtral's experts with the sparse-mixer top-2 router, LayerNorms and biases."""

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer", head_bias=bool(getattr(config.hf, "lm_head_bias", False)))

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), scoring="sparsemixer",
                                  jitter_eps=float(h.router_jitter_noise)),
                       self.config.intermediate_size, self.config.hidden_act)


class PhiMoEForCausalLM(PhimoeForCausalLM):
    """vLLM's name for PhimoeForCausalLM."""


class Ernie4_5_MoeForCausalLM(MoEForCausalLM):  # noqa: N801 (the architecture's name)
    """Softmax scores, chosen with a correction bias, renormalized (moe_norm_min); shared
    experts; MoE layers from moe_layer_start_index to moe_layer_end_index every
    moe_layer_interval; interleaved rope."""

    renamed_weights = [(r"\.mlp\.gate\.moe_statics\.e_score_correction_bias", ".mlp.gate.e_score_correction_bias"),
                       (r"\.mlp\.moe_statics\.e_score_correction_bias", ".mlp.gate.e_score_correction_bias"),
                       (r"\.mlp\.shared_experts\.", ".mlp.shared_expert.")]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        bias = bool(config.hf.use_bias)
        return LlamaFlags(interleaved_rope=True, qkv_bias=bias, o_bias=bias, mlp_bias=bias, head_bias=bias)

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), renormalize=True,
                                  renorm_min=float(h.moe_norm_min), correction_bias=True),
                       h.moe_intermediate_size, self.config.hidden_act)

    def is_moe_layer(self, layer_id: int) -> bool:
        h = self.config.hf
        end = h.moe_layer_end_index if h.moe_layer_end_index >= 0 else self.config.num_layers - 1
        return (layer_id + 1) % h.moe_layer_interval == 0 and h.moe_layer_start_index <= layer_id <= end

    def shared_expert(self) -> nn.Module | None:
        h = self.config.hf
        n = h.moe_num_shared_experts or 0
        c = self.config
        return LlamaMLP(c.hidden_size, h.moe_intermediate_size * n, c.hidden_act, bool(h.use_bias)) if n else None


class ErnieMoeForCausalLM(Ernie4_5_MoeForCausalLM):
    """vLLM's name for Ernie4_5_MoeForCausalLM."""


class Glm4MoeForCausalLM(MoEForCausalLM):
    """DeepSeek V3 routing (sigmoid, correction bias, grouped top-k, routed_scaling_factor),
    shared experts, the first first_k_dense_replace layers dense, optional q/k norms,
    partial rotary."""

    renamed_weights = [(r"\.mlp\.shared_experts\.", ".mlp.shared_expert.")]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(o_bias=False, qk_norm="head" if getattr(config.hf, "use_qk_norm", False) else None)

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), scoring="sigmoid",
                                  renormalize=bool(h.norm_topk_prob), correction_bias=True,
                                  n_group=h.n_group, topk_group=h.topk_group,
                                  routed_scaling_factor=float(h.routed_scaling_factor)),
                       h.moe_intermediate_size, self.config.hidden_act)

    def is_moe_layer(self, layer_id: int) -> bool:
        return layer_id >= self.config.hf.first_k_dense_replace

    def shared_expert(self) -> nn.Module | None:
        h = self.config.hf
        n = h.n_shared_experts or 0
        return self.dense_mlp(h.moe_intermediate_size * n) if n else None


class AriaTextForCausalLM(MoEForCausalLM):
    """Aria's decoder: every layer MoE, top-k logits then softmax (Granite's), routed experts
    always SiLU-gated, shared experts (moe_num_shared_experts x intermediate wide, the config's
    act) summed with them. The checkpoint stacks each layer's experts transposed: fc1 (E, H, 2I)
    gate columns then up, fc2 (E, I, H)."""

    renamed_weights = [(r"\.mlp\.router\.", ".mlp.gate."), (r"\.mlp\.shared_experts\.", ".mlp.shared_expert.")]
    stacked_weights: list = []

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), int(h.moe_topk), scoring="topk_softmax"),
                       self.config.intermediate_size, "silu")

    def shared_expert(self) -> nn.Module | None:
        n = self.config.hf.moe_num_shared_experts or 0
        return self.dense_mlp(self.config.intermediate_size * n) if n else None

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        """fc1 / fc2 into layers/moe.py's w13 (E, 2I, H) and w2 (E, H, I)."""
        ours = {".mlp.experts.fc1.weight": ".mlp.experts.w13_weight", ".mlp.experts.fc2.weight": ".mlp.experts.w2_weight"}
        for name, t in weights:
            leaf = next((k for k in ours if name.endswith(k)), None)
            yield (name, t) if leaf is None else (name[: -len(leaf)] + ours[leaf], t.transpose(1, 2).contiguous())
