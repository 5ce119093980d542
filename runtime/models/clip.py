"""CLIP's text tower as an embedding model (CLIPModel checkpoints: openai/clip-vit-*): texts ->
vectors in the joint text-image space.

Differs from BERT (bert.py): causal attention (each token sees those before it), pre-LayerNorm
blocks (x + f(norm(x))), quick-GELU, learned absolute positions (77 in OpenAI's checkpoints), a
final LayerNorm, and a projection (`text_projection`, no bias) of the pooled token. The pooled
token is the last one: CLIP pools at <|endoftext|>, which its tokenizer puts at the end of every
text (token ids given directly should end with it too). Vectors are L2-normalized (the cosine
CLIP compares) unless the caller passes normalize=False, which gives `get_text_features`.

Images embed through the image side (`embed_images`: CLIP's vision tower, layers/vision.py,
its class token after post_layernorm, projected by `visual_projection`): get_image_features,
L2-normalized like the texts unless normalize=False. Engine.encode(image_data=...) without a
prompt runs it on the caller's thread (a tower call; no KV, no scheduler step).

NOTE: causal + last token, so a cached prefix may be reused."""

from __future__ import annotations

import torch
from torch import nn

from ..cache import KVPool, MHAKVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.embedding import VocabEmbedding
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from ..layers.pooler import Pooler
from ..layers.vision import CLIPVisionTower
from ..multimodal.towers import VisionTowerConfig
from .bert import BertLayer


class CLIPTextLayer(BertLayer):
    """BERT's modules (attn_norm / mlp_norm are CLIP's layer_norm1 / layer_norm2), causal, pre-norm."""

    def __init__(self, config: ModelConfig, layer_id: int) -> None:
        super().__init__(config, layer_id, causal=True)

    def forward(self, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """x (tokens, hidden) -> (tokens, hidden); pre-norm: x + f(norm(x)) twice."""
        q, k, v = self.qkv_proj.split(self.qkv_proj(self.attn_norm(x)))
        x = self.attn_out(self.attn(q, k, v, batch), residual=x)
        return self.down_proj(self.act(self.up_proj(self.mlp_norm(x))), residual=x)


class CLIPModel(nn.Module):
    task = "embed"
    modalities = ("image",)  # Engine.encode(image_data=...) without a prompt: the image side
    packed_modules = {"q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v")}
    ignored_weights = (r"^logit_scale$", r"position_ids$")
    renamed_weights = [
        (r"^text_model\.embeddings\.token_embedding\.", "token_embedding."),
        (r"^text_model\.embeddings\.position_embedding\.", "position_embedding."),
        (r"^text_model\.encoder\.layers\.", "layers."),
        (r"^text_model\.final_layer_norm\.", "final_norm."),
        (r"^(layers\.\d+)\.self_attn\.out_proj\.", r"\1.attn_out."),
        (r"^(layers\.\d+)\.self_attn\.", r"\1."),
        (r"^(layers\.\d+)\.layer_norm1\.", r"\1.attn_norm."),
        (r"^(layers\.\d+)\.layer_norm2\.", r"\1.mlp_norm."),
        (r"^(layers\.\d+)\.mlp\.fc1\.", r"\1.up_proj."),
        (r"^(layers\.\d+)\.mlp\.fc2\.", r"\1.down_proj."),
        (r"^text_projection\.weight$", "projection.weight"),
        (r"^vision_model\.", "vision_tower."),  # the image side keeps transformers' names
    ]

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        c = config
        if max_length > c.max_position:
            raise ValueError(f"context_length={max_length} is past CLIP's limit of {c.max_position} tokens "
                             "(max_position_embeddings): lower context_length")
        self.config, self.max_tokens = config, c.max_position
        self.embedding_dim = c.projection_dim or c.hidden_size  # what encode() returns
        self.token_embedding = VocabEmbedding(c.vocab_size, c.hidden_size)
        self.position_embedding = VocabEmbedding(c.max_position, c.hidden_size)
        self.layers = nn.ModuleList(CLIPTextLayer(c, i) for i in range(c.num_layers))
        self.final_norm = LayerNorm(c.hidden_size, c.norm_eps)
        self.projection = Linear(c.hidden_size, self.embedding_dim, bias=False)
        self.pooler = config.pooling or Pooler("last", normalize=True)
        v = config.vision_hf
        self.vision_tower = CLIPVisionTower(VisionTowerConfig(
            hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_layers=v.num_hidden_layers,
            num_heads=v.num_attention_heads, image_size=v.image_size, patch_size=v.patch_size,
            num_channels=v.num_channels, norm_eps=v.layer_norm_eps, hidden_act=v.hidden_act, kind="clip_vision_model"))
        self.visual_projection = Linear(v.hidden_size, self.embedding_dim, bias=False)

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(images, 3, size, size) -> (images, embedding_dim) get_image_features (not normalized)."""
        x = self.vision_tower.hidden_states(pixels, (-1,))[0]  # (images, 1 + patches, hidden)
        return self.visual_projection(self.vision_tower.post_layernorm(x[:, 0]))

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """-> (tokens, hidden) after the final LayerNorm (projected per pooled vector: `project`)."""
        x = batch.embed(self.token_embedding) + self.position_embedding(batch.positions)
        for layer in self.layers:
            x = layer(x, batch)
        return self.final_norm(x)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """(requests, hidden) -> (requests, embedding_dim): into the joint text-image space."""
        return self.projection(pooled)

    def make_kv_pool(self, dtype: torch.dtype, device: torch.device) -> KVPool:
        c = self.config
        return MHAKVPool(c.num_layers, c.num_kv_heads, c.head_dim, dtype, device)
