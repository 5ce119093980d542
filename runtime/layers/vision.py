"""Vision towers: the CLIP ViT (LLaVA's encoder) built from linear, norm and activation layers.
A tower computes whole images at once (no KV cache): patch embedding, class token, learned
positions, then pre-norm encoder layers with bidirectional attention."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import VisionTowerConfig
from .activation import get_activation
from .linear import Linear, QKVLinear
from .norm import LayerNorm, RMSNorm


class VisionAttention(nn.Module):
    def __init__(self, c: VisionTowerConfig, out_bias: bool = True) -> None:
        super().__init__()
        self.heads, self.head_dim = c.num_heads, c.hidden_size // c.num_heads
        self.qkv_proj = QKVLinear(c.hidden_size, self.head_dim, c.num_heads, c.num_heads, bias=c.attention_bias)
        self.out_proj = Linear(c.hidden_size, c.hidden_size, bias=out_bias)  # (Mllama's has none)
        # InternViT's large towers: RMSNorm over all heads' q (and k) at once, before the split
        self.q_norm = RMSNorm(c.hidden_size) if c.qk_norm else None
        self.k_norm = RMSNorm(c.hidden_size) if c.qk_norm else None

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (images, patches, hidden) -> the same shape; key_mask (images, 1, 1, patches) bool:
        the keys each row may see (an audio clip's real frames), or an additive float mask
        broadcastable to (images, heads, patches, patches) (Mllama's tiles); None: all."""
        b, n, _ = x.shape
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        # (images, heads, patches, head_dim)
        q, k, v = (t.view(b, n, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # every patch sees every patch of its image
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class VisionMLP(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.fc1 = Linear(c.hidden_size, c.intermediate_size, bias=True)
        self.fc2 = Linear(c.intermediate_size, c.hidden_size, bias=True)
        self.act = get_activation(c.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.layer_norm1 = LayerNorm(c.hidden_size, c.norm_eps)
        self.self_attn = VisionAttention(c)
        self.layer_norm2 = LayerNorm(c.hidden_size, c.norm_eps)
        self.mlp = VisionMLP(c)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), key_mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.patch_size = c.patch_size
        self.class_embedding = nn.Parameter(torch.empty(c.hidden_size), requires_grad=False)
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, bias=False)
        self.patch_embedding.weight.requires_grad_(False)
        self.position_embedding = nn.Embedding(c.num_patches + 1, c.hidden_size)
        self.position_embedding.weight.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (images, channels, size, size) -> (images, 1 + patches, hidden)."""
        w = self.patch_embedding.weight
        patches = self.patch_embedding(pixels.to(w.dtype)).flatten(2).transpose(1, 2)  # (images, patches, hidden)
        cls = self.class_embedding.to(w.dtype).expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], dim=1)
        return x + self.position_embedding.weight[: x.shape[1]]


class CLIPEncoder(nn.Module):
    def __init__(self, c: VisionTowerConfig, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(c) for _ in range(num_layers))

    def hidden_states(self, x: torch.Tensor, layers: tuple[int, ...],
                      key_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """hidden_states[i] as transformers numbers them (0: the input x, i: after layer i;
        negative from the end), for each i in layers. Layers after the last one asked for are
        not run. key_mask: as VisionAttention's."""
        total = len(self.layers)
        wanted = [i % (total + 1) for i in layers]
        states = {0: x}
        for i, layer in enumerate(self.layers[: max(wanted)], start=1):
            x = layer(x, key_mask)
            states[i] = x
        return [states[i] for i in wanted]


class CLIPVisionTower(nn.Module):
    """Names follow the checkpoint's `vision_tower.*` (embeddings, pre_layrnorm, encoder,
    post_layernorm). `hidden_states(pixels, layers)` gives the outputs LLaVA selects."""

    has_cls_token = True

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.config = c
        self.embeddings = CLIPEmbeddings(c)
        self.pre_layrnorm = LayerNorm(c.hidden_size, c.norm_eps)  # (sic: the checkpoint's name)
        self.encoder = CLIPEncoder(c, c.num_layers)
        self.post_layernorm = LayerNorm(c.hidden_size, c.norm_eps)  # loaded; unused by LLaVA's features

    def hidden_states(self, pixels: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """hidden_states[i] as transformers numbers them (0: the embeddings after pre_layrnorm,
        i: after layer i; negative from the end), for each i in layers."""
        return self.encoder.hidden_states(self.pre_layrnorm(self.embeddings(pixels)), layers)
