"""DBRX: a Llama-shaped decoder with bias-free LayerNorms, a fused Wqkv clamped to clip_qkv,
and a MoE feed-forward in every layer (softmax top-k, weights divided by their
moe_normalize_expert_weights-norm).

Its experts are stored flat, each projection one (E * I, H) tensor (w1 gate, v1 up, w2 down
transposed); `transform_weights` splits them into per-expert tensors that the usual
`expert_weight_rules` stack."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ..config import ModelConfig
from ..layers.moe import MoESpec
from ..layers.moe_router import RouterSpec
from .llama import LlamaFlags
from .moe_llama import MoEForCausalLM

_KINDS = {"w1": "gate_proj", "v1": "up_proj", "w2": "down_proj"}


class DbrxForCausalLM(MoEForCausalLM):
    renamed_weights = [(r"^transformer\.wte\.", "model.embed_tokens."), (r"^transformer\.norm_f\.", "model.norm."),
                       (r"^transformer\.blocks\.", "model.layers."),
                       (r"\.norm_attn_norm\.norm_1\.", ".input_layernorm."),
                       (r"\.norm_attn_norm\.norm_2\.", ".post_attention_layernorm."),
                       (r"\.norm_attn_norm\.attn\.Wqkv\.", ".self_attn.qkv_proj."),
                       (r"\.norm_attn_norm\.attn\.out_proj\.", ".self_attn.o_proj."),
                       (r"\.ffn\.router\.layer\.", ".mlp.gate."), (r"\.ffn\.experts\.", ".mlp.experts.")]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer_nobias", norm_eps=1e-5, qkv_bias=False, o_bias=False)  # torch's LayerNorm eps

    def moe_spec(self) -> MoESpec:
        f = self.config.hf.ffn_config
        p = f.moe_normalize_expert_weights
        act = (f.ffn_act_fn or {}).get("name", "silu")
        return MoESpec(RouterSpec(f.moe_num_experts, f.moe_top_k, renormalize=p is not None,
                                  renorm_p=float(p or 1.0)), f.ffn_hidden_size, act)

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        """`...ffn.experts.mlp.<w1|v1|w2>` (E * I, H) -> `...ffn.experts.<e>.<gate|up|down>_proj.weight`."""
        f = self.config.hf.ffn_config
        for name, t in weights:
            stem, _, leaf = name.rpartition(".mlp.")
            if not stem.endswith(".ffn.experts") or leaf not in _KINDS:
                yield name, t
                continue
            per_expert = t.view(f.moe_num_experts, f.ffn_hidden_size, -1)  # (E, I, H)
            for e in range(f.moe_num_experts):
                w = per_expert[e].t() if leaf == "w2" else per_expert[e]  # down: (H, I)
                yield f"{stem}.{e}.{_KINDS[leaf]}.weight", w
