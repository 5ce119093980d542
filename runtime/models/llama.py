"""Llama (and every family that is Llama with flags): GQA, rope scaling, biases, tied head."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.activation import gated, get_activation
from ..layers.attention import Attention
from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.linear import GateUpLinear, Linear, QKVLinear
from ..layers.logits import LogitsProcessor
from ..layers.norm import RMSNorm
from ..layers.rotary import RotaryEmbedding


class LlamaMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int, act: str, bias: bool) -> None:
        super().__init__()
        self.gate_up_proj = GateUpLinear(hidden, intermediate, bias)
        self.down_proj = Linear(intermediate, hidden, bias)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(gated(self.act, self.gate_up_proj(x)))


class LlamaAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer_id: int, rotary: RotaryEmbedding) -> None:
        super().__init__()
        c = config
        self.qkv_proj = QKVLinear(c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, c.attention_bias)
        self.o_proj = Linear(c.num_heads * c.head_dim, c.hidden_size, c.attention_bias)
        self.rotary = rotary
        self.attn = Attention(c.num_heads, c.num_kv_heads, c.head_dim, layer_id, sliding_window=c.sliding_window)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        q, k = self.rotary(positions, q, k)
        return self.o_proj(self.attn(q, k, v, batch))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_id: int, rotary: RotaryEmbedding) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_id, rotary)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act, config.mlp_bias)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        x = x + self.self_attn(positions, self.input_layernorm(x), batch)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        rotary = RotaryEmbedding(config.rope, config.head_dim, max_length)
        self.embed_tokens = VocabEmbedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i, rotary) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        x = self.embed_tokens(batch.input_ids)  # (tokens, hidden)
        for layer in self.layers:
            x = layer(batch.positions, x, batch)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    # checkpoint projection -> (fused parameter, shard)
    packed_modules = {
        "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
    }
    ignored_weights = (r"rotary_emb\.inv_freq",)

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config, max_length)
        self.lm_head = LMHead(config.vocab_size, config.hidden_size)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.logits_processor = LogitsProcessor()

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """-> (len(batch.logit_rows), vocab) float32 logits."""
        return self.logits_processor(self.model(batch), self.lm_head, batch)
