"""DeepSeek V2 and V3 (and the checkpoints built on V3: R1, Kimi K2).

Differs from Llama: attention is Multi-head Latent Attention (layers/mla.py) over a pool of
latents (cache/kv_pool.py: MLAKVPool), with rope on a separate qk_rope_head_dim slice, rotated
in adjacent pairs; the first `first_k_dense_replace` layers have a dense MLP, the rest a
mixture of experts with shared experts. V2 routes by softmax (greedy or group-limited), V3 by
sigmoid scores plus a correction bias with grouped top-k (layers/moe.py)."""

from __future__ import annotations

import torch
from torch import nn

from ..cache.kv_pool import KVPool, MLAKVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.logits import LogitsProcessor
from ..layers.mla import MLA_PACKED, MLAConfig, MLAttention
from ..layers.norm import RMSNorm
from ..layers.rotary import RotaryEmbedding
from .llama import GATE_UP_PACKED, LlamaMLP


class DeepseekDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, mla: MLAConfig, layer_id: int, rotary: RotaryEmbedding) -> None:
        super().__init__()
        c = config
        self.self_attn = MLAttention(c, mla, layer_id, rotary)
        self.dense = layer_id < c.hf.first_k_dense_replace
        if self.dense:
            self.mlp = LlamaMLP(c.hidden_size, c.intermediate_size, c.hidden_act, c.mlp_bias)
        else:
            raise ValueError(f"layer {layer_id}: mixture-of-experts layers need layers/moe.py, which is not "
                             "merged yet; set first_k_dense_replace = num_hidden_layers")
        self.input_layernorm = RMSNorm(c.hidden_size, c.norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.norm_eps)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        x = self.self_attn(positions, self.input_layernorm(x), batch, residual=x)
        return self.mlp(self.post_attention_layernorm(x), residual=x)


class DeepseekModel(nn.Module):
    def __init__(self, config: ModelConfig, mla: MLAConfig, interleaved_rope: bool, max_length: int) -> None:
        super().__init__()
        c = config
        rotary = RotaryEmbedding(c.rope, mla.qk_rope_head_dim, max_length, interleaved=interleaved_rope)
        self.embed_tokens = VocabEmbedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DeepseekDecoderLayer(c, mla, i, rotary) for i in range(c.num_layers))
        self.norm = RMSNorm(c.hidden_size, c.norm_eps)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        x = batch.embed(self.embed_tokens)
        for layer in self.layers:
            x = layer(batch.positions, x, batch)
        return self.norm(x)


class DeepseekV2ForCausalLM(nn.Module):
    packed_modules = {**MLA_PACKED, **GATE_UP_PACKED}
    # V3 checkpoints carry a multi-token-prediction layer past the last one; transformers skips it too
    ignored_weights = (r"rotary_emb\.inv_freq", r"^model\.layers\.61\.")
    task = "generate"

    @staticmethod
    def interleaved_rope(config: ModelConfig) -> bool:
        return True  # V2 rotates adjacent pairs (transformers: complex multiplication)

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mla = MLAConfig.from_hf(config.hf)
        self.model = DeepseekModel(config, self.mla, self.interleaved_rope(config), max_length)
        self.lm_head = LMHead(config.vocab_size, config.hidden_size)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.logits_processor = LogitsProcessor()

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

    @staticmethod
    def interleaved_rope(config: ModelConfig) -> bool:
        return bool(config.hf.rope_interleave)
