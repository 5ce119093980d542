"""Aria's projector: a fixed number of learned queries (by the tower's patch count) cross-attend
to a crop's patches, then a LayerNorm and a two-layer GELU MLP into the text width. Names follow
the checkpoint's `multi_modal_projector.*` (its attention is torch's nn.MultiheadAttention,
whose in_proj / out_proj parameters are loaded as they are)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .activation import get_activation
from .linear import Linear
from .norm import LayerNorm


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


class MultiheadAttention(nn.Module):
    """nn.MultiheadAttention's forward (batch first, no dropout) over its own parameter names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = _param(3 * width, width)  # q, k, v rows
        self.in_proj_bias = _param(3 * width)
        self.out_proj = Linear(width, width, bias=True)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """q (crops, queries, width), k and v (crops, patches, width); key_mask (crops, patches)
        bool, the keys each query may see (None: all) -> (crops, queries, width)."""
        w, b = self.in_proj_weight.chunk(3), self.in_proj_bias.chunk(3)
        q, k, v = (F.linear(x, w[i], b[i]) for i, x in enumerate((q, k, v)))
        # (crops, heads, tokens, head_dim)
        q, k, v = (x.unflatten(-1, (self.heads, -1)).transpose(1, 2) for x in (q, k, v))
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class AriaCrossAttention(nn.Module):
    """The checkpoint's q_proj / k_proj / v_proj are query_proj / key_proj / value_proj here (q
    from the queries, k and v from the patches: not the towers' packed q/k/v)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.query_proj = Linear(width, width, bias=False)
        self.key_proj = Linear(width, width, bias=False)
        self.value_proj = Linear(width, width, bias=False)
        self.multihead_attn = MultiheadAttention(width, heads)
        self.linear = Linear(width, width, bias=True)
        self.layer_norm = LayerNorm(width, 1e-5)  # the queries'
        self.layer_norm_kv = LayerNorm(width, 1e-5)  # the patches'

    def forward(self, patches: torch.Tensor, queries: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        q = self.query_proj(self.layer_norm(queries))
        kv = self.layer_norm_kv(patches)
        return self.linear(self.multihead_attn(q, self.key_proj(kv), self.value_proj(kv), key_mask))


class AriaProjectorMLP(nn.Module):
    def __init__(self, width: int, hidden: int, out: int) -> None:
        super().__init__()
        self.linear_in = Linear(width, hidden, bias=False)
        self.linear_out = Linear(hidden, out, bias=False)
        self.act = get_activation("gelu_new")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_out(self.act(self.linear_in(x)))


class AriaProjector(nn.Module):
    def __init__(self, width: int, heads: int, text_hidden: int, queries: dict[int, int]) -> None:
        super().__init__()
        self.queries_for = queries  # the tower's patches per crop -> the crop's queries (tokens)
        self.query = _param(max(queries.values()), width)
        self.cross_attn = AriaCrossAttention(width, heads)
        self.layer_norm = LayerNorm(width, 1e-5)
        self.feed_forward = AriaProjectorMLP(width, text_hidden, text_hidden)

    def forward(self, patches: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """patches (crops, patches, width); key_mask (crops, patches) bool: the real patches ->
        (crops, queries, text hidden)."""
        n = patches.shape[1]
        if n not in self.queries_for:
            raise ValueError(f"pixel_values: crops of {n} patches; projector_patch_to_query_dict has "
                             f"{sorted(self.queries_for)}: use the image processor's max_image_size")
        queries = self.query[: self.queries_for[n]].to(patches.dtype).expand(patches.shape[0], -1, -1)
        return self.feed_forward(self.layer_norm(self.cross_attn(patches, queries, key_mask)))
