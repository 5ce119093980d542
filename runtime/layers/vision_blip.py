"""BLIP-2's vision side: its ViT (CLIP's embeddings with a biased patch convolution and no
pre-norm, CLIP's encoder layers, a post-LayerNorm over every token) and the Q-Former, whose
learned queries run through post-LN BERT layers that cross-attend to the ViT's states.

Module names follow the checkpoint's `vision_model.*` and `qformer.*` (BERT's
attention.attention.query, attention.output.LayerNorm, intermediate_query, output_query)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import QFormerConfig, VisionTowerConfig
from .activation import get_activation
from .linear import Linear
from .norm import LayerNorm
from .vision import CLIPEmbeddings, CLIPEncoder


class BlipVisionTower(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.embeddings = CLIPEmbeddings(c)
        self.embeddings.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size,
                                                    bias=True).requires_grad_(False)
        self.encoder = CLIPEncoder(c, c.num_layers)
        self.post_layernorm = LayerNorm(c.hidden_size, c.norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(images, 3, size, size) -> (images, 1 + patches, hidden): last_hidden_state."""
        x = self.embeddings(pixels)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


class QFormerHeads(nn.Module):
    """Multi-head attention of queries over `kv_width`-wide states (themselves, or the image's)."""

    def __init__(self, c: QFormerConfig, kv_width: int) -> None:
        super().__init__()
        self.heads = c.num_heads
        self.query = Linear(c.hidden_size, c.hidden_size, bias=True)
        self.key = Linear(kv_width, c.hidden_size, bias=True)
        self.value = Linear(kv_width, c.hidden_size, bias=True)

    def forward(self, x: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """x (images, queries, hidden), states (images, keys, kv_width) -> (images, queries, hidden)."""
        b, n, h = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (images, heads, rows, head_dim)
            return t.view(b, t.shape[1], self.heads, h // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(states)), split(self.value(states)))
        return out.transpose(1, 2).reshape(b, n, h)


class QFormerOutput(nn.Module):
    """BERT's post-norm residual: LayerNorm(dense(x) + residual)."""

    def __init__(self, c: QFormerConfig, width: int) -> None:
        super().__init__()
        self.dense = Linear(width, c.hidden_size, bias=True)
        self.LayerNorm = LayerNorm(c.hidden_size, c.norm_eps)  # noqa: N815 (the checkpoint's name)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x, residual=residual))


class QFormerAttention(nn.Module):
    def __init__(self, c: QFormerConfig, kv_width: int) -> None:
        super().__init__()
        self.attention = QFormerHeads(c, kv_width)
        self.output = QFormerOutput(c, c.hidden_size)

    def forward(self, x: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(x, states), x)


class QFormerIntermediate(nn.Module):
    def __init__(self, c: QFormerConfig) -> None:
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size, bias=True)
        self.act = get_activation(c.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class QFormerLayer(nn.Module):
    """Self-attention among the queries, cross-attention to the image (every cross_every-th
    layer from 0), then the queries' own MLP (intermediate_query, output_query)."""

    def __init__(self, c: QFormerConfig, index: int) -> None:
        super().__init__()
        self.attention = QFormerAttention(c, c.hidden_size)
        self.crossattention = QFormerAttention(c, c.encoder_hidden_size) if index % c.cross_every == 0 else None
        self.intermediate_query = QFormerIntermediate(c)
        self.output_query = QFormerOutput(c, c.intermediate_size)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, x)
        if self.crossattention is not None:
            x = self.crossattention(x, image)
        return self.output_query(self.intermediate_query(x), x)


class QFormerEncoder(nn.Module):
    def __init__(self, c: QFormerConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(QFormerLayer(c, i) for i in range(c.num_layers))


class QFormer(nn.Module):
    """`query_tokens` (the model's learned queries) -> (images, queries, hidden): layernorm, then
    the layers. The text-input branch (use_qformer_text_input) is not used by generation."""

    def __init__(self, c: QFormerConfig) -> None:
        super().__init__()
        self.layernorm = LayerNorm(c.hidden_size, c.norm_eps)
        self.encoder = QFormerEncoder(c)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """queries (1, queries, hidden), image (images, tokens, vision hidden) -> in the Q-Former's
        own dtype (BLIP-2 keeps it in float32, as transformers does)."""
        dtype = self.layernorm.weight.dtype
        x = self.layernorm(queries.to(dtype)).expand(image.shape[0], -1, -1)
        image = image.to(dtype)
        for layer in self.encoder.layer:
            x = layer(x, image)
        return x
