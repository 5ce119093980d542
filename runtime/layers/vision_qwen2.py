"""Qwen2-VL's native-resolution ViT: the processor flattens each image (or each pair of video
frames) into patches of temporal_patch_size x patch x patch pixels, already ordered so that
every merge_size x merge_size block of neighbouring patches is contiguous; the tower embeds
them linearly, rotates q/k by each patch's 2-D (row, column) position, attends within one
frame's patches, and the merger turns every block into one decoder-input row.

Qwen2.5-VL's tower differs in RMSNorm, a gated MLP, and window attention: the blocks not in
`full_attention_blocks` attend within windows of window_size pixels, so the tower works on
the merge blocks reordered window by window (undone after the merger).

Qwen3-VL's tower differs in a biased patch embedding, a learned square position table
interpolated (bilinear, corners aligned) to each frame's grid and added to the patches, and
DeepStack: the outputs of `deepstack_layers` blocks go through their own mergers (norm over the
whole block) and leave the tower beside the final merger's rows, for the early LM layers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import VisionTowerConfig
from .activation import gated, get_activation
from .linear import GateUpLinear, Linear
from .norm import LayerNorm, RMSNorm
from .vision import VisionMLP


def patch_positions(grid: list[tuple[int, int, int]], merge: int) -> torch.Tensor:
    """(patches, 2) (row, column) of every patch in the processor's block-major order."""
    out = []
    for t, h, w in grid:
        rows = torch.arange(h)[:, None].expand(h, w)
        cols = torch.arange(w)[None, :].expand(h, w)
        pos = torch.stack([rows, cols], dim=-1)  # (h, w, 2)
        # (h/m, m, w/m, m, 2) -> (h/m, w/m, m, m, 2): the patches of one block side by side
        pos = pos.reshape(h // merge, merge, w // merge, merge, 2).transpose(1, 2).reshape(-1, 2)
        out.append(pos.repeat(t, 1))
    return torch.cat(out)


def window_order(grid: list[tuple[int, int, int]], merge: int, window: int) -> tuple[torch.Tensor, list[int]]:
    """-> (blocks,) the merge blocks of every frame reordered window by window (row-major
    windows of `window` x `window` blocks, row-major inside), and each window's patch count."""
    order, segments, base = [], [], 0
    for t, h, w in grid:
        bh, bw = h // merge, w // merge
        index = torch.arange(t * bh * bw).view(t, bh, bw) + base
        for f in range(t):
            for r in range(0, bh, window):
                for c in range(0, bw, window):
                    part = index[f, r : r + window, c : c + window].reshape(-1)
                    order.append(part)
                    segments.append(part.numel() * merge * merge)
        base += t * bh * bw
    return torch.cat(order), segments


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class VisionRotary(nn.Module):
    """2-D rope: a quarter of the head's frequencies per axis, (row, column) concatenated and
    repeated over the two halves the rotation pairs."""

    def __init__(self, head_dim: int, theta: float = 10000.0, split_axes: bool = False) -> None:
        super().__init__()
        quarter = head_dim // 2
        inv = 1.0 / theta ** (torch.arange(0, quarter, 2, dtype=torch.float32) / quarter)  # (head_dim // 4,)
        if split_axes:  # Pixtral: the head's frequencies, the even ones for rows and the odd ones for columns
            full = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
            inv = torch.stack([full[0::2], full[1::2]])  # (2, head_dim // 4)
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (patches, 2) -> cos, sin (patches, head_dim), float32."""
        freqs = (positions[..., None].float() * self.inv_freq).flatten(1)  # (patches, head_dim // 2)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()


class QwenVisionAttention(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = c.num_heads, c.hidden_size // c.num_heads
        self.qkv = Linear(c.hidden_size, 3 * c.hidden_size, bias=c.attention_bias)
        self.proj = Linear(c.hidden_size, c.hidden_size, bias=c.block_bias)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor], segments: list[int]) -> torch.Tensor:
        """x (patches, hidden); every patch sees the patches of its segment (one frame)."""
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.head_dim).unbind(1)  # each (patches, heads, head_dim)
        return self.proj(segment_attention(q, k, v, cos_sin, segments).reshape(n, -1))


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor],
                      segments: list[int]) -> torch.Tensor:
    """q, k, v (patches, heads, head_dim) -> the same shape: q/k rotated by the 2-D rope, each
    patch attending to the patches of its segment (a frame, a window, an image)."""
    cos, sin = (t[:, None, :] for t in cos_sin)
    q, k = ((t.float() * cos + rotate_half(t.float()) * sin).to(v.dtype) for t in (q, k))
    outs = []
    for qs, ks, vs in zip(q.split(segments), k.split(segments), v.split(segments)):
        o = F.scaled_dot_product_attention(qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1))
        outs.append(o.transpose(0, 1))  # (segment, heads, head_dim)
    return torch.cat(outs)


class GatedVisionMLP(nn.Module):
    """2.5's MLP: down(act(gate(x)) * up(x)), with biases (Pixtral's without; gate/up fused as the decoder's)."""

    def __init__(self, c: VisionTowerConfig, bias: bool = True) -> None:
        super().__init__()
        self.gate_up_proj = GateUpLinear(c.hidden_size, c.intermediate_size, bias=bias)
        self.down_proj = Linear(c.intermediate_size, c.hidden_size, bias=bias)
        self.act = get_activation(c.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(gated(self.act, self.gate_up_proj(x)))


def _norm(c: VisionTowerConfig, dim: int) -> nn.Module:
    return RMSNorm(dim, c.norm_eps) if c.rms_norm else LayerNorm(dim, c.norm_eps)


class QwenVisionBlock(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.norm1 = _norm(c, c.hidden_size)
        self.norm2 = _norm(c, c.hidden_size)
        self.attn = QwenVisionAttention(c)
        self.mlp = GatedVisionMLP(c, bias=c.block_bias) if c.gated_mlp else VisionMLP(c)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor], segments: list[int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos_sin, segments)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """LayerNorm, then each merge_size^2 block of patches -> MLP -> one decoder row
    (`whole_block`: Qwen3-VL's DeepStack mergers norm the concatenated block instead)."""

    def __init__(self, c: VisionTowerConfig, whole_block: bool = False) -> None:
        super().__init__()
        self.block, self.whole_block = c.hidden_size * c.merge_size**2, whole_block
        self.ln_q = _norm(c, self.block if whole_block else c.hidden_size)
        self.mlp = nn.ModuleList([Linear(self.block, self.block, bias=True), nn.GELU(),
                                  Linear(self.block, c.out_hidden_size, bias=True)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_q(x.view(-1, self.block)) if self.whole_block else self.ln_q(x).view(-1, self.block)
        for layer in self.mlp:
            x = layer(x)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        p, t = c.patch_size, c.temporal_patch_size
        self.proj = nn.Conv3d(c.num_channels, c.hidden_size, (t, p, p), (t, p, p), bias=c.patch_bias)
        self.proj.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(patches, channels * t * p * p) flattened patches -> (patches, hidden): the conv whose
        stride is its kernel is one matrix product per patch."""
        w = self.proj.weight
        return F.linear(pixels.to(w.dtype), w.view(w.shape[0], -1), self.proj.bias)


class Qwen2VisionTower(nn.Module):
    """Names follow the checkpoint's `visual.*` (patch_embed, blocks, merger)."""

    def __init__(self, c: VisionTowerConfig) -> None:
        super().__init__()
        self.config = c
        self.patch_embed = PatchEmbed(c)
        self.rotary = VisionRotary(c.hidden_size // c.num_heads)
        self.blocks = nn.ModuleList(QwenVisionBlock(c) for _ in range(c.num_layers))
        self.merger = PatchMerger(c)
        self.deepstack_mergers = nn.ModuleList(PatchMerger(c, whole_block=True) for _ in c.deepstack_layers)
        self.pos_embed = nn.Embedding(c.position_embeddings, c.hidden_size) if c.position_embeddings else None

    def forward(self, pixels: torch.Tensor, grid: list[tuple[int, int, int]]) -> torch.Tensor:
        """pixels (patches, patch_dim) of items with grids (t, h, w) in patches -> (patches /
        merge_size^2, out_hidden * (1 + len(deepstack_layers))) rows, item after item: the
        final merger's columns, then each DeepStack merger's."""
        c = self.config
        unit = c.merge_size**2
        x = self.patch_embed(pixels)
        if self.pos_embed is not None:
            x = x + interpolated_positions(self.pos_embed.weight, grid, c.merge_size).to(x.dtype)
        cos, sin = self.rotary(patch_positions(grid, c.merge_size).to(x.device))
        frames = [h * w for t, h, w in grid for _ in range(t)]  # full attention stays within a frame
        windows, order = frames, None
        if c.window_size:  # 2.5: reorder the merge blocks window by window (frames stay contiguous)
            order, windows = window_order(grid, c.merge_size, c.window_size // c.merge_size // c.patch_size)
            order = order.to(x.device)

            def by_window(t: torch.Tensor) -> torch.Tensor:
                return t.view(-1, unit, t.shape[-1])[order].view(-1, t.shape[-1])

            x, cos, sin = by_window(x), by_window(cos), by_window(sin)
        deep = []
        for i, block in enumerate(self.blocks):
            x = block(x, (cos, sin), frames if not c.window_size or i in c.full_attention_blocks else windows)
            if i in c.deepstack_layers:
                deep.append(self.deepstack_mergers[c.deepstack_layers.index(i)](x))
        out = torch.cat([self.merger(x), *deep], dim=-1)  # (blocks, out_hidden * (1 + deep)), window order in 2.5
        return out if order is None else out[torch.argsort(order)]


def interpolated_positions(table: torch.Tensor, grid: list[tuple[int, int, int]], merge: int) -> torch.Tensor:
    """(side * side, hidden) learned positions -> (patches, hidden): each frame's (h, w) grid
    samples the square table bilinearly with corners aligned (source row i * (side - 1) /
    (h - 1)), in the processor's block-major patch order, repeated over the frames."""
    side = int(round(table.shape[0] ** 0.5))
    pos = patch_positions(grid, merge).to(table.device)  # (patches, 2) row, column
    sizes = torch.cat([torch.tensor([[h, w]]).expand(t * h * w, 2) for t, h, w in grid]).to(table.device)
    src = pos * (side - 1) / (sizes - 1).clamp(min=1)  # (patches, 2) float source coordinates
    lo = src.floor().long().clamp(0, side - 1)
    hi = (lo + 1).clamp(max=side - 1)
    frac = src - lo
    out = 0
    for r, wr in ((lo[:, 0], 1 - frac[:, 0]), (hi[:, 0], frac[:, 0])):
        for col, wc in ((lo[:, 1], 1 - frac[:, 1]), (hi[:, 1], frac[:, 1])):
            out = out + table[r * side + col] * (wr * wc)[:, None].to(table.dtype)
    return out
