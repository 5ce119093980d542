"""GPT-OSS: a Llama-shaped decoder (q/k/v/o biases, yarn rope, sliding and full attention
layers alternating) with attention sinks and MoE feed-forwards in every layer: top-k router
logits with a bias, softmax over the chosen ones; experts with biases and the clamped SwiGLU
(layers/moe.py "swiglu_oai").

Checkpoint layouts, converted at load (`transform_weights`) to layers/moe.py's:
- mlp.experts.gate_up_proj (E, H, 2I), gate and up columns interleaved; gate_up_proj_bias (E, 2I)
- mlp.experts.down_proj (E, I, H); down_proj_bias (E, H)
- or, quantized (the released checkpoints): <name>_blocks / <name>_scales in MXFP4 over the
  (E, 2I, H) and (E, H, I) layouts (loader/mxfp4.py), dequantized here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ..config import ModelConfig
from ..layers.moe import MoESpec
from ..layers.moe_router import RouterSpec
from ..loader.mxfp4 import dequantize_mxfp4
from .llama import LlamaFlags
from .moe_llama import MoEForCausalLM, experts_per_token, num_experts

_EXPERTS = ".mlp.experts."


def _deinterleave(t: torch.Tensor, dim: int) -> torch.Tensor:
    """gate/up interleaved along dim (g0 u0 g1 u1 ...) -> gate half, then up half."""
    n = t.shape[dim]
    return torch.cat([t.index_select(dim, torch.arange(0, n, 2)), t.index_select(dim, torch.arange(1, n, 2))], dim)


def convert_experts(name: str, t: torch.Tensor) -> tuple[str, torch.Tensor]:
    """One expert tensor of the checkpoint (dequantized if it was MXFP4) -> (our name, tensor)."""
    base, leaf = name.rsplit(_EXPERTS, 1)
    prefix = base + _EXPERTS
    if leaf == "gate_up_proj":  # (E, H, 2I)
        return prefix + "w13_weight", _deinterleave(t.transpose(1, 2), 1).contiguous()
    if leaf == "gate_up_proj_bias":  # (E, 2I)
        return prefix + "w13_bias", _deinterleave(t, 1).contiguous()
    if leaf == "gate_up_proj_dequantized":  # (E, 2I, H)
        return prefix + "w13_weight", _deinterleave(t, 1).contiguous()
    if leaf == "down_proj":  # (E, I, H)
        return prefix + "w2_weight", t.transpose(1, 2).contiguous()
    if leaf == "down_proj_dequantized":  # (E, H, I)
        return prefix + "w2_weight", t
    if leaf == "down_proj_bias":
        return prefix + "w2_bias", t
    raise ValueError(f"{name}: not a GPT-OSS expert tensor (gate_up_proj[_bias|_blocks|_scales], "
                     "down_proj[_bias|_blocks|_scales])")


class GptOssForCausalLM(MoEForCausalLM):
    renamed_weights = [(r"\.self_attn\.sinks$", ".self_attn.attn.sinks"), (r"\.mlp\.router\.", ".mlp.gate.")]
    stacked_weights: list = []

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(sinks=True)

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), scoring="topk_softmax", router_bias=True),
                       self.config.intermediate_size, "swiglu_oai", expert_bias=True,
                       swiglu_alpha=float(getattr(h, "swiglu_alpha", 1.702)), swiglu_limit=float(h.swiglu_limit))

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        """Expert tensors into layers/moe.py's layout; MXFP4 pairs dequantized once both arrive."""
        pending: dict[str, dict[str, torch.Tensor]] = {}
        for name, t in weights:
            if _EXPERTS not in name:
                yield name, t
                continue
            if name.endswith(("_blocks", "_scales")):
                stem, part = name.rsplit("_", 1)
                pair = pending.setdefault(stem, {})
                pair[part] = t
                if len(pair) == 2:
                    del pending[stem]
                    yield convert_experts(stem + "_dequantized", dequantize_mxfp4(pair["blocks"], pair["scales"]))
                continue
            yield convert_experts(name, t)
        if pending:
            raise ValueError(f"MXFP4 tensors without their pair (blocks and scales): {sorted(pending)}")


class GPTOSSForCausalLM(GptOssForCausalLM):
    """vLLM's name for GptOssForCausalLM."""
