"""BERT encoders (MiniLM, BGE, sentence-transformers' BERT models) as embedding models, and
BERT cross-encoders / classifiers (BertForSequenceClassification). RoBERTa and XLM-RoBERTa
(roberta.py) are this family with a position offset.

Differs from Llama: bidirectional attention (every token sees its whole request, so a request
is computed in one forward and never reuses a cached prefix), learned absolute positions plus
token-type embeddings, a LayerNorm on the embeddings, post-LayerNorm blocks
(x = norm(x + f(x))), an ungated GELU MLP, biases everywhere, no final norm and no LM head.
The head is a pooler: sentence-transformers' (modules.json) when the folder has one, else CLS
with L2 normalization (BGE's rule); classifiers pool CLS into dense -> tanh -> out_proj."""

from __future__ import annotations

import torch
from torch import nn

from ..cache import KVPool, MHAKVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.activation import get_activation
from ..layers.attention import Attention
from ..layers.classifier import DenseTanhHead, score_activation
from ..layers.embedding import VocabEmbedding
from ..layers.linear import Linear, QKVLinear
from ..layers.norm import LayerNorm
from ..layers.pooler import Pooler

DEFAULT_POOLER = Pooler("cls", normalize=True)


class BertEmbeddings(nn.Module):
    def __init__(self, config: ModelConfig, position_offset: int) -> None:
        super().__init__()
        c = config
        self.position_offset = position_offset  # RoBERTa: positions start after its padding id
        self.word_embeddings = VocabEmbedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = VocabEmbedding(c.max_position, c.hidden_size)
        self.token_type_embeddings = VocabEmbedding(c.hf.type_vocab_size, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, c.norm_eps)  # noqa: N815 (the checkpoint's name)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """-> (tokens, hidden). Token types come with the batch (the tokenizer's token_type_ids
        of sentence pairs); without them every token is segment 0."""
        x = batch.embed(self.word_embeddings)  # (tokens, hidden), any given input embeddings in place
        x = x + self.position_embeddings(batch.positions + self.position_offset)
        types = batch.token_type_ids
        if types is not None and int(types.max()) >= self.token_type_embeddings.weight.shape[0]:
            raise ValueError(f"token_type_ids must be below type_vocab_size="
                             f"{self.token_type_embeddings.weight.shape[0]}")
        x = x + (self.token_type_embeddings.weight[0] if types is None else self.token_type_embeddings(types))
        return self.LayerNorm(x)


class BertLayer(nn.Module):
    """causal: CLIP's text tower (clip.py) has these modules, causal and pre-norm."""

    def __init__(self, config: ModelConfig, layer_id: int, causal: bool = False) -> None:
        super().__init__()
        c = config
        self.qkv_proj = QKVLinear(c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, bias=True)
        self.attn = Attention(c.num_heads, c.num_kv_heads, c.head_dim, layer_id, causal=causal)
        self.attn_out = Linear(c.num_heads * c.head_dim, c.hidden_size, bias=True)
        self.attn_norm = LayerNorm(c.hidden_size, c.norm_eps)
        self.up_proj = Linear(c.hidden_size, c.intermediate_size, bias=True)
        self.down_proj = Linear(c.intermediate_size, c.hidden_size, bias=True)
        self.mlp_norm = LayerNorm(c.hidden_size, c.norm_eps)
        self.act = get_activation(c.hidden_act)

    def forward(self, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """x (tokens, hidden) -> (tokens, hidden); post-norm: norm(x + f(x)) twice."""
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        x = self.attn_norm(self.attn_out(self.attn(q, k, v, batch), residual=x))
        return self.mlp_norm(self.down_proj(self.act(self.up_proj(x)), residual=x))


ENCODER_RENAMES = [
        (r"^(bert|roberta)\.", ""),
        (r"^encoder\.layer\.", "layers."),
        (r"\.attention\.self\.", "."),
        (r"\.attention\.output\.dense\.", ".attn_out."),
        (r"\.attention\.output\.LayerNorm\.", ".attn_norm."),
        (r"\.intermediate\.dense\.", ".up_proj."),
        (r"\.output\.dense\.", ".down_proj."),
        (r"\.output\.LayerNorm\.", ".mlp_norm."),
        # transformers < 4.31 spelled LayerNorm's parameters gamma and beta
        (r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias"),
        (r"_norm\.gamma$", "_norm.weight"), (r"_norm\.beta$", "_norm.bias"),
]


class BertModel(nn.Module):
    task = "embed"  # the head the runner applies (model_runner.py): self.pooler
    bidirectional = True  # whole prompts in one forward, never a cached prefix (model_runner.py)
    packed_modules = {"query": ("qkv_proj", "q"), "key": ("qkv_proj", "k"), "value": ("qkv_proj", "v")}
    # the pooler's dense+tanh (`pooler_output`) is not what sentence-transformers pools; MLM heads
    # of BertForMaskedLM / BertForPreTraining / RobertaForMaskedLM checkpoints are not served
    ignored_weights = (r"embeddings\.position_ids$", r"^(bert\.|roberta\.)?pooler\.", r"^cls\.", r"^lm_head\.")
    renamed_weights = ENCODER_RENAMES

    @staticmethod
    def position_offset(config: ModelConfig) -> int:
        """Added to each token's position before the position embedding (BERT: none)."""
        return 0

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        name = type(self).__name__
        kind = getattr(config.hf, "position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(f"{name}: position_embedding_type={kind!r} is not supported; only 'absolute'")
        offset = self.position_offset(config)
        self.max_tokens = config.max_position - offset  # the longest input (the engine's context)
        if max_length > config.max_position:
            raise ValueError(f"context_length={max_length} is past {name}'s limit of {self.max_tokens} tokens "
                             f"(max_position_embeddings={config.max_position}): lower context_length")
        self.config = config
        self.embeddings = BertEmbeddings(config, offset)
        self.layers = nn.ModuleList(BertLayer(config, i) for i in range(config.num_layers))
        self.pooler = config.pooling or DEFAULT_POOLER

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """-> (tokens, hidden): the last layer's output (BERT has no final norm)."""
        x = self.embeddings(batch)
        for layer in self.layers:
            x = layer(x, batch)
        return x

    def make_kv_pool(self, dtype: torch.dtype, device: torch.device) -> KVPool:
        c = self.config
        return MHAKVPool(c.num_layers, c.num_kv_heads, c.head_dim, dtype, device)


class BertForSequenceClassification(BertModel):
    """Cross-encoders and classifiers: CLS -> BERT's pooler (dense, tanh) -> classifier; one
    label scores with a sigmoid (sentence-transformers' CrossEncoder), several with a softmax."""

    task = "classify"
    ignored_weights = (r"embeddings\.position_ids$", r"^cls\.")
    renamed_weights = [(r"^bert\.pooler\.dense\.", "classifier.dense."),
                       (r"^classifier\.(weight|bias)$", r"classifier.out_proj.\1"), *ENCODER_RENAMES]

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        self.pooler = Pooler("cls", normalize=False)
        self.labels = config.labels
        self.classifier = DenseTanhHead(config.hidden_size, len(config.labels))
        self.activation = score_activation(config.score_activation, len(config.labels), "sigmoid")
