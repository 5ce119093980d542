"""Llama, and every dense decoder that is Llama with flags: GQA, rope scaling, biases, tied head,
sliding windows, soft-capping, q/k norms, norm placement, parallel residual, ungated MLPs,
multipliers, learned positions or ALiBi instead of rope.

Each variant states how it differs from Llama in one `flags(config)` method and, where its
checkpoint names differ, a `renamed_weights` list; the layers read only `LlamaFlags` and
`ModelConfig`. Variants of other families live in their own files (gemma.py, phi.py, gpt2.py,
gpt_neox.py, falcon.py, opt.py, bloom.py, mpt.py) and subclass `LlamaForCausalLM`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from ..cache.kv_pool import KVPool, MHAKVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.logits import LogitsProcessor
from ..layers.rotary import RotaryEmbedding
from .llama_layers import BLOCKS, LlamaFlags, LlamaMLP, make_norm

__all__ = ["LlamaFlags", "LlamaForCausalLM", "LlamaMLP", "LlamaModel", "make_norm"]


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig, flags: LlamaFlags, max_length: int,
                 make_mlp: Callable[[int], nn.Module | None] | None = None,
                 make_attention: Callable[[int, RotaryEmbedding | None], nn.Module | None] | None = None) -> None:
        """make_mlp(layer) -> the layer's feed-forward when not the dense MLP (MoE), else None;
        make_attention(layer, rotary) -> its attention when not LlamaAttention (Llama 4), else None."""
        super().__init__()
        c = config
        rotary = RotaryEmbedding(c.rope, c.head_dim, max_length, interleaved=flags.interleaved_rope)
        local = rotary if c.sliding_rope is None else RotaryEmbedding(c.sliding_rope, c.head_dim, max_length,
                                                                        interleaved=flags.interleaved_rope)
        no_rope = flags.alibi_slopes is not None or flags.learned_positions is not None
        ropes = [None if no_rope or (flags.rope_layers and not flags.rope_layers[i]) else
                 local if c.layer_windows[i] is not None else rotary for i in range(c.num_layers)]
        self.embed_tokens = VocabEmbedding(c.vocab_size, c.hidden_size, scale=flags.embed_scale or c.scales.embed)
        self.position_offset = flags.learned_positions
        self.embed_positions = None if flags.learned_positions is None else \
            VocabEmbedding(c.max_position + flags.learned_positions, c.hidden_size)
        self.embed_norm = make_norm(flags.norm, c.hidden_size, c.norm_eps) if flags.embed_norm else None
        block = BLOCKS[flags.block]
        mlps = [None if make_mlp is None else make_mlp(i) for i in range(c.num_layers)]
        attns = [None if make_attention is None else make_attention(i, ropes[i]) for i in range(c.num_layers)]
        self.layers = nn.ModuleList(block(c, flags, i, ropes[i], mlps[i], attns[i]) for i in range(c.num_layers))
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
        # (3, tokens) M-RoPE positions where the batch has them (only an MRotaryEmbedding model's)
        positions = batch.positions if batch.mrope_positions is None else batch.mrope_positions
        for layer in self.layers:
            x = layer(positions, x, batch)
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
        self.model = LlamaModel(config, flags, max_length, self.make_mlp, self.make_attention)
        self.lm_head = LMHead(config.vocab_size, config.hidden_size, bias=flags.head_bias)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.logits_processor = LogitsProcessor(final_softcap=config.scales.final_softcap, scale=config.scales.logits)

    def make_mlp(self, layer_id: int) -> nn.Module | None:
        """The feed-forward of layer `layer_id` when it is not the dense MLP (MoE families:
        moe_llama.py), else None."""
        return None

    def make_attention(self, layer_id: int, rotary: RotaryEmbedding | None) -> nn.Module | None:
        """The attention of layer `layer_id` when it is not LlamaAttention (llama4.py), else None."""
        return None

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
    """Llama with multipliers (embedding, residual, attention, logits: ModelConfig.scales)."""


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
        return LlamaFlags(norm="nonparametric", norm_eps=1e-5)


class Olmo2ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(block="post", qk_norm="full")


class Exaone4ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        windows = config.layer_windows
        # with any sliding layer, the full-attention layers use no rope
        rope = None if all(w is None for w in windows) else tuple(w is not None for w in windows)
        return LlamaFlags(block="post", qk_norm="head", rope_layers=rope)


class GlmForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(interleaved_rope=True, o_bias=False)


class Glm4ForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(interleaved_rope=True, o_bias=False, block="sandwich")


class CohereForCausalLM(LlamaForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        qk = "head_layer" if config.hf.use_qk_norm else None
        return LlamaFlags(norm="layer_nobias", block="parallel", interleaved_rope=True, qk_norm=qk)


class Cohere2ForCausalLM(CohereForCausalLM):
    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        # only sliding-window layers use rope
        rope = tuple(w is not None for w in config.layer_windows)
        return LlamaFlags(norm="layer_nobias", block="parallel", interleaved_rope=True, rope_layers=rope)


class StableLmForCausalLM(LlamaForCausalLM):
    renamed_weights = [(r"\.self_attn\.([qk])_layernorm\.", r".self_attn.\1_norm.")]

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        h = config.hf
        return LlamaFlags(norm="layer", block="parallel" if h.use_parallel_residual else "pre", qkv_bias=h.use_qkv_bias, o_bias=False,
                          qk_norm="per_head_layer" if h.qk_layernorm else None)
