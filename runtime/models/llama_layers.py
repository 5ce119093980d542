"""The layers of every Llama-shaped decoder: `LlamaFlags` (how a family differs from Llama),
norms, the MLP, attention with its projections, and the decoder blocks, one straight-line class
per topology, chosen by `LlamaFlags.block`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.activation import gated, get_activation, residual_add
from ..layers.attention import Attention
from ..layers.linear import GateUpLinear, Linear, QKVLinear
from ..layers.norm import LayerNorm, PerHeadLayerNorm, RMSNorm
from ..layers.rotary import RotaryEmbedding


@dataclass(frozen=True)
class LlamaFlags:
    """How a Llama-shaped family differs from Llama. None means "as the config says"."""

    norm: str = "rms"  # rms | gemma (RMS, 1 + w) | layer | layer_nobias | layer1p (Nemotron: 1 + w) |
    #                    nonparametric (OLMo)
    norm_eps: float | None = None  # the eps the family hard-codes, whatever the config says
    block: str = "pre"  # the decoder block's topology: a class of BLOCKS (below)
    gated_mlp: bool = True  # False: down(act(up(x)))
    hidden_act: str | None = None  # None: config.hidden_act
    qkv_bias: bool | None = None  # None: config.attention_bias
    o_bias: bool | None = None  # None: config.attention_bias
    mlp_bias: bool | None = None  # None: config.mlp_bias
    qk_norm: str | None = None  # head (RMSNorm per head; 1 + w with norm="gemma") | full (RMSNorm over
    #                             all heads) | layer (LayerNorm per head, shared weights) |
    #                             head_layer (LayerNorm, one weight per head) | per_head_layer (StableLM) |
    #                             head_layer_bias (LayerNorm, a weight and bias per head: Chameleon)
    interleaved_rope: bool = False  # rotate adjacent pairs (GLM, Cohere, ERNIE)
    rope_layers: tuple[bool, ...] | None = None  # which layers apply rope; None: all
    embed_scale: float | None = None  # a family's own embedding normalizer (Gemma: sqrt(hidden));
    #     the constants a config gives (multipliers, soft caps, clip_qkv) are ModelConfig.scales
    attn_scale_by_layer: bool = False  # GPT-2 scale_attn_by_inverse_layer_idx: scaling / (layer + 1)
    alibi_slopes: tuple[float, ...] | None = None  # ALiBi instead of rope (Bloom, MPT)
    grouped_qkv: bool = False  # fused checkpoint q/k/v grouped per kv head (GPT-NeoX, Bloom, Falcon)
    conv1d: bool = False  # checkpoint stores linear weights as (in, out) (GPT-2)
    learned_positions: int | None = None  # absolute position embedding, looked up at position + offset
    embed_norm: bool = False  # a norm right after the embedding (Bloom)
    head_bias: bool = False  # LM head with bias (Phi, GPT-J)
    clip_after_qk_norm: bool = False  # clip_qkv clamps the normed q/k (OLMoE), not the projections
    sinks: bool = False  # a learned sink logit per head in each softmax (GPT-OSS; layers/attention.py)

    def __post_init__(self) -> None:
        choices = {"norm": ("rms", "gemma", "layer", "layer_nobias", "layer1p", "nonparametric"),
                   "block": tuple(BLOCKS),
                   "qk_norm": (None, "head", "full", "layer", "head_layer", "per_head_layer",
                               "head_layer_bias")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"LlamaFlags.{name}={getattr(self, name)!r}: use one of {allowed}")


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    if kind in ("rms", "gemma"):
        return RMSNorm(dim, eps, offset=1.0 if kind == "gemma" else 0.0)
    if kind == "nonparametric":
        return LayerNorm(dim, eps, affine=False)
    return LayerNorm(dim, eps, bias=kind != "layer_nobias", offset=1.0 if kind == "layer1p" else 0.0)


def make_qk_norm(kind: str, heads: int, head_dim: int, eps: float, norm: str) -> nn.Module:
    if kind == "head":
        return make_norm(norm, head_dim, eps)
    if kind == "full":
        return RMSNorm(heads * head_dim, eps)
    if kind in ("head_layer", "head_layer_bias"):
        return LayerNorm(head_dim, eps, bias=kind == "head_layer_bias", heads=heads)
    if kind == "layer":  # one LayerNorm with bias shared by every head (Phi, Persimmon)
        return LayerNorm(head_dim, eps)
    return PerHeadLayerNorm(head_dim, heads, eps)


def _or(value: bool | None, default: bool) -> bool:
    return default if value is None else value


class LlamaMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int, act: str, bias: bool, gated_mlp: bool = True,
                 conv1d: bool = False) -> None:
        super().__init__()
        self.is_gated = gated_mlp
        if gated_mlp:
            self.gate_up_proj = GateUpLinear(hidden, intermediate, bias, conv1d)
        else:
            self.up_proj = Linear(hidden, intermediate, bias, conv1d)
        self.down_proj = Linear(intermediate, hidden, bias, conv1d)
        self.act = get_activation(act)

    def pack_tiles(self) -> None:
        """A gated SiLU MLP without bias packs gate/up for the kernel that applies silu * up
        inside the product (runtime/layers/linear.py: pack_tile_weights)."""
        if self.is_gated and self.act is F.silu:
            self.gate_up_proj.pack_tiles(gated=True)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The MLP's output, + residual when given (added inside the down projection)."""
        if self.is_gated:
            act = self.gate_up_proj.silu_mul(x) if self.act is F.silu else gated(self.act, self.gate_up_proj(x))
            return self.down_proj(act, residual)
        return self.down_proj(self.act(self.up_proj(x)), residual)


class LlamaAttention(nn.Module):
    def __init__(self, config: ModelConfig, flags: LlamaFlags, layer_id: int, rotary: RotaryEmbedding | None) -> None:
        super().__init__()
        c, f = config, flags
        self.heads, self.kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
        self.qkv_proj = QKVLinear(c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads,
                                  _or(f.qkv_bias, c.attention_bias), f.conv1d, f.grouped_qkv)
        self.o_proj = Linear(c.num_heads * c.head_dim, c.hidden_size, _or(f.o_bias, c.attention_bias), f.conv1d)
        self.qk_norm = f.qk_norm
        self.qk_norm_on_heads = f.qk_norm != "full"  # else over all heads at once (OLMo 2)
        if f.qk_norm:
            self.q_norm = make_qk_norm(f.qk_norm, c.num_heads, c.head_dim, c.norm_eps, f.norm)
            self.k_norm = make_qk_norm(f.qk_norm, c.num_kv_heads, c.head_dim, c.norm_eps, f.norm)
        self.clip_qkv, self.clip_after_norm = c.scales.clip_qkv, f.clip_after_qk_norm
        self.rotary = rotary
        scaling = c.scales.attention or c.head_dim**-0.5
        if f.attn_scale_by_layer:
            scaling /= layer_id + 1
        alibi = torch.tensor(f.alibi_slopes, dtype=torch.float32) if f.alibi_slopes else None
        self.attn = Attention(c.num_heads, c.num_kv_heads, c.head_dim, layer_id, scaling=scaling,
                              sliding_window=c.layer_windows[layer_id], softcap=c.scales.attn_softcap, alibi=alibi,
                              sinks=f.sinks)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """The attention block's output, + residual when given (added inside o_proj)."""
        qkv = self.qkv_proj(x)
        if self.clip_qkv is not None and not self.clip_after_norm:
            qkv = qkv.clamp(-self.clip_qkv, self.clip_qkv)
        q, k, v = self.qkv_proj.split(qkv)
        if self.qk_norm:
            if self.qk_norm_on_heads:
                q = self.q_norm(q.view(-1, self.heads, self.head_dim)).flatten(1)  # (tokens, heads * head_dim)
                k = self.k_norm(k.view(-1, self.kv_heads, self.head_dim)).flatten(1)
            else:
                q, k = self.q_norm(q), self.k_norm(k)
        if self.clip_qkv is not None and self.clip_after_norm:
            q, k, v = (t.clamp(-self.clip_qkv, self.clip_qkv) for t in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(positions, q, k)
        return self.o_proj(self.attn(q, k, v, batch), residual)


class DecoderBlock(nn.Module):
    """Attention and MLP of one layer; subclasses differ only in where norms and residuals go
    (straight-line forwards, one per topology). Norm names are the checkpoints'."""

    def __init__(self, config: ModelConfig, flags: LlamaFlags, layer_id: int, rotary: RotaryEmbedding | None,
                 mlp: nn.Module | None = None, attn: nn.Module | None = None) -> None:
        """mlp: the layer's feed-forward when it is not the dense MLP (an MoE block, taking
        `(x, residual=None)` as LlamaMLP does); attn: its attention when not LlamaAttention (a
        subclass)."""
        super().__init__()
        c, f = config, flags
        self.self_attn = attn if attn is not None else LlamaAttention(c, f, layer_id, rotary)
        self.mlp = mlp if mlp is not None else LlamaMLP(
            c.hidden_size, c.intermediate_size, f.hidden_act or c.hidden_act, _or(f.mlp_bias, c.mlp_bias),
            f.gated_mlp, f.conv1d)
        self.residual_scale = c.scales.residual
        for name in self.norms:
            setattr(self, name, make_norm(f.norm, c.hidden_size, c.norm_eps))

    norms: tuple[str, ...] = ()

    def _residual(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return residual_add(x, out if self.residual_scale is None else out * self.residual_scale)


class PreNormBlock(DecoderBlock):
    """Llama: x + attn(norm(x)), then + mlp(norm(x)); each residual add inside its product."""

    norms = ("input_layernorm", "post_attention_layernorm")

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        h = self.input_layernorm(x)
        if self.residual_scale is not None:  # Granite: scaled sublayer outputs
            x = self._residual(x, self.self_attn(positions, h, batch))
            return self._residual(x, self.mlp(self.post_attention_layernorm(x)))
        x = self.self_attn(positions, h, batch, residual=x)
        return self.mlp(self.post_attention_layernorm(x), residual=x)


class SandwichBlock(DecoderBlock):
    """Differs from Llama: each sublayer's output is normed too (Gemma 2/3, GLM-4)."""

    norms = ("input_layernorm", "post_attention_layernorm", "post_self_attn_layernorm", "post_mlp_layernorm")

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        x = self._residual(x, self.post_self_attn_layernorm(self.self_attn(positions, self.input_layernorm(x), batch)))
        return self._residual(x, self.post_mlp_layernorm(self.mlp(self.post_attention_layernorm(x))))


class PostNormBlock(DecoderBlock):
    """Differs from Llama: norms the sublayer outputs, not their inputs (OLMo 2, EXAONE 4)."""

    norms = ("post_attention_layernorm", "post_feedforward_layernorm")

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(positions, x, batch))
        return x + self.post_feedforward_layernorm(self.mlp(x))


class ParallelBlock(DecoderBlock):
    """Differs from Llama: x + attn(norm(x)) + mlp(norm(x)), one shared norm (Cohere, Phi, GPT-J)."""

    norms = ("input_layernorm",)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        h = self.input_layernorm(x)
        return x + self.self_attn(positions, h, batch) + self.mlp(h)


class ParallelTwoNormsBlock(DecoderBlock):
    """Differs from ParallelBlock: attention and MLP each norm x themselves (GPT-NeoX, Falcon 2)."""

    norms = ("input_layernorm", "post_attention_layernorm")

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        return x + self.self_attn(positions, self.input_layernorm(x), batch) + self.mlp(self.post_attention_layernorm(x))


BLOCKS: dict[str, type[DecoderBlock]] = {"pre": PreNormBlock, "sandwich": SandwichBlock, "post": PostNormBlock,
                                         "parallel": ParallelBlock, "parallel_two_norms": ParallelTwoNormsBlock}
