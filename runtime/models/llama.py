"""Llama, and every dense decoder that is Llama with flags: GQA, rope scaling, biases, tied head,
sliding windows, soft-capping, q/k norms, norm placement, parallel residual, ungated MLPs,
multipliers, learned positions or ALiBi instead of rope.

Each variant states how it differs from Llama in one `flags(config)` method and, where its
checkpoint names differ, a `renamed_weights` list; the layers read only `LlamaFlags` and
`ModelConfig`. Variants of other families live in their own files (gemma.py, phi.py, gpt2.py,
gpt_neox.py, falcon.py, opt.py, bloom.py, mpt.py) and subclass `LlamaForCausalLM`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..cache.kv_pool import KVPool, MHAKVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.activation import gated, get_activation, residual_add
from ..layers.attention import Attention
from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.linear import GateUpLinear, Linear, QKVLinear
from ..layers.logits import LogitsProcessor
from ..layers.norm import LayerNorm, PerHeadLayerNorm, RMSNorm
from ..layers.rotary import RotaryEmbedding


@dataclass(frozen=True)
class LlamaFlags:
    """How a Llama-shaped family differs from Llama. None means "as the config says"."""

    norm: str = "rms"  # rms | gemma (RMS, 1 + w) | layer | layer_nobias | layer1p (Nemotron: 1 + w) |
    #                    nonparametric (OLMo)
    norm_eps: float | None = None  # the eps the family hard-codes, whatever the config says
    norm_placement: str = "pre"  # pre | post (norm each sublayer's output) | sandwich (both)
    parallel: str | None = None  # shared: x + attn(norm(x)) + mlp(norm(x)) | two_norms: own norm each
    gated_mlp: bool = True  # False: down(act(up(x)))
    hidden_act: str | None = None  # None: config.hidden_act
    qkv_bias: bool | None = None  # None: config.attention_bias
    o_bias: bool | None = None  # None: config.attention_bias
    mlp_bias: bool | None = None  # None: config.mlp_bias
    qk_norm: str | None = None  # head (RMSNorm per head; 1 + w with norm="gemma") | full (RMSNorm over
    #                             all heads) | layer (LayerNorm per head, shared weights) |
    #                             head_layer (LayerNorm, one weight per head) | per_head_layer (StableLM)
    interleaved_rope: bool = False  # rotate adjacent pairs (GLM, Cohere, ERNIE)
    rope_layers: tuple[bool, ...] | None = None  # which layers apply rope; None: all
    clip_qkv: float | None = None  # clamp q, k, v to [-clip, clip] (OLMo)
    embed_scale: float | None = None  # Granite embedding_multiplier
    residual_scale: float | None = None  # Granite residual_multiplier
    attn_scale: float | None = None  # Granite attention_multiplier; None: head_dim ** -0.5
    logit_scale: float | None = None  # Granite 1 / logits_scaling, Cohere logit_scale
    attn_softcap: float | None = None  # Gemma 2
    final_softcap: float | None = None  # Gemma 2/3
    attn_scale_by_layer: bool = False  # GPT-2 scale_attn_by_inverse_layer_idx: scaling / (layer + 1)
    alibi_slopes: tuple[float, ...] | None = None  # ALiBi instead of rope (Bloom, MPT)
    grouped_qkv: bool = False  # fused checkpoint q/k/v grouped per kv head (GPT-NeoX, Bloom, Falcon)
    conv1d: bool = False  # checkpoint stores linear weights as (in, out) (GPT-2)
    learned_positions: int | None = None  # absolute position embedding, looked up at position + offset
    embed_norm: bool = False  # a norm right after the embedding (Bloom)
    head_bias: bool = False  # LM head with bias (Phi, GPT-J)

    def __post_init__(self) -> None:
        choices = {"norm": ("rms", "gemma", "layer", "layer_nobias", "layer1p", "nonparametric"),
                   "norm_placement": ("pre", "post", "sandwich"), "parallel": (None, "shared", "two_norms"),
                   "qk_norm": (None, "head", "full", "layer", "head_layer", "per_head_layer")}
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
    if kind == "head_layer":
        return LayerNorm(head_dim, eps, bias=False, heads=heads)
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
        self.clip_qkv = f.clip_qkv
        self.rotary = rotary
        scaling = f.attn_scale or c.head_dim**-0.5
        if f.attn_scale_by_layer:
            scaling /= layer_id + 1
        alibi = torch.tensor(f.alibi_slopes, dtype=torch.float32) if f.alibi_slopes else None
        self.attn = Attention(c.num_heads, c.num_kv_heads, c.head_dim, layer_id, scaling=scaling,
                              sliding_window=c.layer_windows[layer_id], softcap=f.attn_softcap, alibi=alibi)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """The attention block's output, + residual when given (added inside o_proj)."""
        qkv = self.qkv_proj(x)
        if self.clip_qkv is not None:
            qkv = qkv.clamp(-self.clip_qkv, self.clip_qkv)
        q, k, v = self.qkv_proj.split(qkv)
        if self.qk_norm:
            if self.qk_norm_on_heads:
                q = self.q_norm(q.view(-1, self.heads, self.head_dim)).flatten(1)  # (tokens, heads * head_dim)
                k = self.k_norm(k.view(-1, self.kv_heads, self.head_dim)).flatten(1)
            else:
                q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(positions, q, k)
        return self.o_proj(self.attn(q, k, v, batch), residual)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, flags: LlamaFlags, layer_id: int, rotary: RotaryEmbedding | None) -> None:
        super().__init__()
        c, f = config, flags
        self.self_attn = LlamaAttention(c, f, layer_id, rotary)
        self.mlp = LlamaMLP(c.hidden_size, c.intermediate_size, f.hidden_act or c.hidden_act,
                            _or(f.mlp_bias, c.mlp_bias), f.gated_mlp, f.conv1d)
        self.placement, self.parallel, self.residual_scale = f.norm_placement, f.parallel, f.residual_scale

        def norm() -> nn.Module:
            return make_norm(f.norm, c.hidden_size, c.norm_eps)

        if f.norm_placement == "post":  # differs from Llama: norms the sublayer outputs (OLMo 2, EXAONE 4)
            self.post_attention_layernorm, self.post_feedforward_layernorm = norm(), norm()
            return
        self.input_layernorm = norm()
        if f.parallel != "shared":
            self.post_attention_layernorm = norm()
        if f.norm_placement == "sandwich":  # differs from Llama: GLM-4 also norms the outputs
            self.post_self_attn_layernorm, self.post_mlp_layernorm = norm(), norm()

    def _residual(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return residual_add(x, out if self.residual_scale is None else out * self.residual_scale)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        if self.placement == "post":
            x = x + self.post_attention_layernorm(self.self_attn(positions, x, batch))
            return x + self.post_feedforward_layernorm(self.mlp(x))
        h = self.input_layernorm(x)
        if self.parallel == "shared":
            return x + self.self_attn(positions, h, batch) + self.mlp(h)
        if self.parallel == "two_norms":
            return x + self.self_attn(positions, h, batch) + self.mlp(self.post_attention_layernorm(x))
        if self.placement == "pre" and self.residual_scale is None:  # Llama: each residual add inside its product
            x = self.self_attn(positions, h, batch, residual=x)
            return self.mlp(self.post_attention_layernorm(x), residual=x)
        attn = self.self_attn(positions, h, batch)
        if self.placement == "sandwich":
            attn = self.post_self_attn_layernorm(attn)
        x = self._residual(x, attn)
        mlp = self.mlp(self.post_attention_layernorm(x))
        if self.placement == "sandwich":
            mlp = self.post_mlp_layernorm(mlp)
        return self._residual(x, mlp)


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig, flags: LlamaFlags, max_length: int) -> None:
        super().__init__()
        c = config
        rotary = RotaryEmbedding(c.rope, c.head_dim, max_length, interleaved=flags.interleaved_rope)
        local = rotary if c.sliding_rope is None else RotaryEmbedding(c.sliding_rope, c.head_dim, max_length,
                                                                        interleaved=flags.interleaved_rope)
        no_rope = flags.alibi_slopes is not None or flags.learned_positions is not None
        ropes = [None if no_rope or (flags.rope_layers and not flags.rope_layers[i]) else
                 local if c.layer_windows[i] is not None else rotary for i in range(c.num_layers)]
        self.embed_tokens = VocabEmbedding(c.vocab_size, c.hidden_size, scale=flags.embed_scale)
        self.position_offset = flags.learned_positions
        self.embed_positions = None if flags.learned_positions is None else \
            VocabEmbedding(c.max_position + flags.learned_positions, c.hidden_size)
        self.embed_norm = make_norm(flags.norm, c.hidden_size, c.norm_eps) if flags.embed_norm else None
        self.layers = nn.ModuleList(LlamaDecoderLayer(c, flags, i, ropes[i]) for i in range(c.num_layers))
        self.norm = make_norm(flags.norm, config.hidden_size, config.norm_eps)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        return self.run_layers(self.embed(batch), batch)

    def embed(self, batch: ForwardBatch) -> torch.Tensor:
        """(tokens, hidden): the input of the first layer."""
        x = batch.embed(self.embed_tokens)  # with any given input embeddings in place
        if self.embed_positions is not None:
            x = x + self.embed_positions(batch.positions + self.position_offset)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return x

    def run_layers(self, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """Every decoder layer, then the final norm."""
        for layer in self.layers:
            x = layer(batch.positions, x, batch)
        return self.norm(x)


# checkpoint projection -> (fused parameter, shard)
QKV_PACKED = {"q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v")}
GATE_UP_PACKED = {"gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1)}


class LlamaForCausalLM(nn.Module):
    packed_modules = {**QKV_PACKED, **GATE_UP_PACKED}
    ignored_weights = (r"rotary_emb\.inv_freq",)
    task = "generate"  # the head the runner applies (model_runner.py)

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags()

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        flags = self.flags(config)
        if flags.norm_eps is not None:
            config = dataclasses.replace(config, norm_eps=flags.norm_eps)
        self.config = config
        self.model = LlamaModel(config, flags, max_length)
        self.lm_head = LMHead(config.vocab_size, config.hidden_size, bias=flags.head_bias)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.logits_processor = LogitsProcessor(final_softcap=flags.final_softcap, scale=flags.logit_scale)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """-> (tokens, hidden) hidden states after the final norm."""
        return self.model(batch)

    def compute_logits(self, hidden: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """-> (len(batch.logit_rows), vocab) float32 logits."""
        return self.logits_processor(hidden, self.lm_head, batch)

    def make_kv_pool(self, dtype: torch.dtype, device: torch.device) -> KVPool:
        """The pool layout this model's attention needs (per-head keys and values)."""
        c = self.config
        return MHAKVPool(c.num_layers, c.num_kv_heads, c.head_dim, dtype, device)


# ---- variants: each says how it differs from Llama ------------------------------------------

class MistralForCausalLM(LlamaForCausalLM):
    """Llama with a sliding window (config.layer_windows)."""


class Phi3ForCausalLM(LlamaForCausalLM):
    """Llama whose checkpoint is already fused (qkv_proj, gate_up_proj); longrope, partial rotary."""


class Qwen2ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(qkv_bias=True, o_bias=False)


class Qwen3ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(qk_norm="head")


class GraniteForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        h = config.hf
        return LlamaFlags(embed_scale=h.embedding_multiplier, residual_scale=h.residual_multiplier,
                          attn_scale=h.attention_multiplier, logit_scale=1.0 / h.logits_scaling)


class ArceeForCausalLM(LlamaForCausalLM):
    packed_modules = QKV_PACKED  # up_proj is the MLP's only input projection

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(gated_mlp=False)


class NemotronForCausalLM(ArceeForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="layer1p", gated_mlp=False)


class Starcoder2ForCausalLM(ArceeForCausalLM):
    renamed_weights = [(r"\.mlp\.c_fc\.", ".mlp.up_proj."), (r"\.mlp\.c_proj\.", ".mlp.down_proj.")]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        bias = config.hf.use_bias
        return LlamaFlags(norm="layer", gated_mlp=False, qkv_bias=bias, o_bias=bias, mlp_bias=bias)


class SmolLM3ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(rope_layers=tuple(bool(r) for r in config.hf.no_rope_layers))


class Ernie4_5ForCausalLM(LlamaForCausalLM):  # noqa: N801 (the architecture's name)
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        bias = config.hf.use_bias
        return LlamaFlags(interleaved_rope=True, qkv_bias=bias, o_bias=bias, mlp_bias=bias)


class OlmoForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm="nonparametric", norm_eps=1e-5, clip_qkv=config.hf.clip_qkv)


class Olmo2ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(norm_placement="post", qk_norm="full")


class Exaone4ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        windows = config.layer_windows
        # with any sliding layer, the full-attention layers use no rope
        rope = None if all(w is None for w in windows) else tuple(w is not None for w in windows)
        return LlamaFlags(norm_placement="post", qk_norm="head", rope_layers=rope)


class GlmForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(interleaved_rope=True, o_bias=False)


class Glm4ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(interleaved_rope=True, o_bias=False, norm_placement="sandwich")


class CohereForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        qk = "head_layer" if config.hf.use_qk_norm else None
        return LlamaFlags(norm="layer_nobias", parallel="shared", interleaved_rope=True, qk_norm=qk,
                          logit_scale=config.hf.logit_scale)


class Cohere2ForCausalLM(CohereForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        # only sliding-window layers use rope
        rope = tuple(w is not None for w in config.layer_windows)
        return LlamaFlags(norm="layer_nobias", parallel="shared", interleaved_rope=True, rope_layers=rope,
                          logit_scale=config.hf.logit_scale)


class StableLmForCausalLM(LlamaForCausalLM):
    renamed_weights = [(r"\.self_attn\.([qk])_layernorm\.", r".self_attn.\1_norm.")]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        h = config.hf
        return LlamaFlags(norm="layer", parallel="shared" if h.use_parallel_residual else None, qkv_bias=h.use_qkv_bias, o_bias=False,
                          qk_norm="per_head_layer" if h.qk_layernorm else None)
