"""Phi-4-multimodal's Conformer audio encoder (transformers' Phi4MultimodalAudioModel): log-mel
frames, normalized by a global mean / inverse std, then NeMo-style subsampling (stride-2 convs,
time_reduction in all, one linear over channels x remaining mel bins), then Conformer blocks:

  x = x + 0.5 * MLP_in(x);  x = x + attention(LN(x), relative bias);  x = x + conv(x);
  x = x + 0.5 * MLP_out(x);  x = LN(x)

The MLPs are pre-LN gated (up * act(gate), gate_up fused with up first); the conv module is a
GLU point-wise conv, a causal depthwise conv, act, a point-wise conv. Attention is the vision
towers' (layers/vision.py VisionAttention: fused q/k/v with biases; o_proj loaded as out_proj)
with a learned bias per head and clipped relative distance, as T5's without buckets.

A clip is encoded alone at its own length (no padding). Sequences longer than MAX_POSITIONS
subsampled frames are cut into chunks of that many, encoded independently, as transformers
does; as in transformers' encoder given one clip (no mask), the zero padding of the last chunk
is attended like real frames. (transformers' several-clip batches add their boolean padding
mask to the bias, +1 for real keys and +0 for padding, which only down-weights padding: sgl
encodes each clip alone, as transformers does one clip.)"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import ConformerConfig, VisionTowerConfig
from .activation import get_activation
from .linear import Linear
from .norm import LayerNorm
from .vision import VisionAttention

MAX_POSITIONS = 500  # transformers' max_seq_len: longer inputs are encoded in chunks of this many
NORM_EPS = 1e-5  # torch's LayerNorm default, which every norm of the encoder uses


def subsampled_length(frames: int, time_reduction: int) -> int:
    """Rows the subsampling gives for `frames` mel frames: each stride-2 conv (kernel 3, padding
    1) halves rounding up."""
    for _ in range(time_reduction.bit_length() - 1):
        frames = (frames - 1) // 2 + 1
    return frames


class ConformerMLP(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        self.layer_norm = LayerNorm(c.hidden_size, NORM_EPS)
        self.gate_up_proj = Linear(c.hidden_size, 2 * c.intermediate_size, bias=True)  # (up, gate)
        self.down_proj = Linear(c.intermediate_size, c.hidden_size, bias=True)
        self.act = get_activation(c.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, gate = self.gate_up_proj(self.layer_norm(x)).chunk(2, dim=-1)
        return self.down_proj(up * self.act(gate))


class GluPointWiseConv(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        self.out = c.ext_pw_out_channel
        self.ext_pw_conv_1d = nn.Conv1d(c.hidden_size, 2 * c.ext_pw_out_channel, kernel_size=1)
        self.b1 = nn.Parameter(torch.zeros(1, c.ext_pw_out_channel, 1), requires_grad=False)
        self.b2 = nn.Parameter(torch.zeros(1, c.ext_pw_out_channel, 1), requires_grad=False)
        self.act = get_activation(c.glu_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(clips, frames, hidden) -> (clips, out channels, frames)."""
        h = self.ext_pw_conv_1d(x.transpose(1, 2))
        return (h[:, : self.out] + self.b1) * self.act(h[:, self.out:] + self.b2)


class DepthWiseSeparableConv(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        inner = c.hidden_size * c.depthwise_multiplier
        self.dw_conv = nn.Conv1d(c.hidden_size, inner, c.kernel_size, padding=c.kernel_size - 1, groups=c.hidden_size)
        self.pw_conv = nn.Conv1d(inner, c.depthwise_out_channel, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw_conv(self.dw_conv(x))


class ConformerConv(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        self.kernel_size = c.kernel_size
        self.layer_norm = LayerNorm(c.hidden_size, NORM_EPS)
        self.glu = GluPointWiseConv(c)
        self.dw_sep_conv_1d = DepthWiseSeparableConv(c)
        self.ext_pw_conv_1d = nn.Conv1d(c.hidden_size, c.ext_pw_out_channel, kernel_size=1)
        self.act = get_activation(c.conv_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw_sep_conv_1d(self.glu(self.layer_norm(x)))
        if self.kernel_size > 1:  # padded on both sides, the right side cut: causal
            h = h[:, :, : -(self.kernel_size - 1)]
        return self.ext_pw_conv_1d(self.act(h)).transpose(1, 2)


def attention_config(c: ConformerConfig) -> VisionTowerConfig:
    """The fields VisionAttention reads (width, heads, biases)."""
    return VisionTowerConfig(hidden_size=c.hidden_size, intermediate_size=c.intermediate_size, num_layers=c.num_blocks,
                             num_heads=c.num_heads, image_size=0, patch_size=1, num_channels=c.input_size,
                             norm_eps=NORM_EPS, hidden_act=c.activation)


class ConformerBlock(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        self.feed_forward_in = ConformerMLP(c)
        self.self_attn = VisionAttention(attention_config(c))
        self.conv = ConformerConv(c)
        self.feed_forward_out = ConformerMLP(c)
        self.layer_norm_att = LayerNorm(c.hidden_size, NORM_EPS)
        self.layer_norm = LayerNorm(c.hidden_size, NORM_EPS)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.feed_forward_in(x)
        x = x + self.self_attn(self.layer_norm_att(x), bias)
        x = x + self.conv(x)
        x = x + 0.5 * self.feed_forward_out(x)
        return self.layer_norm(x)


class NemoSubsampling(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        if c.time_reduction < 2 or c.time_reduction & (c.time_reduction - 1):
            raise ValueError(f"audio_config.time_reduction={c.time_reduction}: a power of 2 is supported")
        ch, act = c.conv_channels, _Activation(c.subsampling_activation)
        layers: list[nn.Module] = [nn.Conv2d(1, ch, kernel_size=3, stride=2, padding=1), act]
        for _ in range(c.time_reduction.bit_length() - 2):  # the checkpoint's conv.N indices
            layers += [nn.Conv2d(ch, ch, kernel_size=3, stride=2, padding=1, groups=ch), nn.Conv2d(ch, ch, kernel_size=1),
                       act]
        self.conv = nn.Sequential(*layers)
        self.out = Linear(ch * subsampled_length(c.input_size, c.time_reduction), c.hidden_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(clips, frames, mels) -> (clips, subsampled frames, hidden)."""
        h = self.conv(x[:, None])  # (clips, channels, frames', mels')
        return self.out(h.transpose(1, 2).flatten(2))


class _Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.fn = get_activation(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class RelativeAttentionBias(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        self.max_distance, self.symmetric = c.bias_max_distance, c.bias_symmetric
        self.bias_values = nn.Embedding(c.bias_max_distance * (1 if c.bias_symmetric else 2), c.num_heads)
        self.bias_values.weight.requires_grad_(False)

    def forward(self, n: int, device: torch.device) -> torch.Tensor:
        """-> (1, heads, n, n): the bias of key j for query i, by j - i clipped to the table."""
        pos = torch.arange(n, device=device)
        rel = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance - 1)
        idx = rel.abs() if self.symmetric else rel + self.max_distance
        return self.bias_values(idx).permute(2, 0, 1)[None]


class MeanVarianceNorm(nn.Module):
    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        # parameters, not buffers: the loader fills (and checks) parameters
        self.global_mean = nn.Parameter(torch.zeros(c.input_size), requires_grad=False)
        self.global_invstd = nn.Parameter(torch.ones(c.input_size), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.global_mean) * self.global_invstd


class ConformerEncoder(nn.Module):
    """Names follow the checkpoint's `audio_embed.encoder.*` (encoder_embedding, embed,
    relative_attention_bias_layer, encoders.N; self_attn.o_proj renamed to out_proj)."""

    def __init__(self, c: ConformerConfig) -> None:
        super().__init__()
        if c.chunk_size > 0:
            raise ValueError(f"audio_config.chunk_size={c.chunk_size}: the streaming (chunked) attention mask is not "
                             "supported; Phi-4-multimodal's checkpoints use -1 (full attention)")
        self.config = c
        self.encoder_embedding = MeanVarianceNorm(c)
        self.embed = NemoSubsampling(c)
        self.relative_attention_bias_layer = RelativeAttentionBias(c)
        self.encoders = nn.ModuleList(ConformerBlock(c) for _ in range(c.num_blocks))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (frames, mels) of one clip -> (subsampled frames, hidden)."""
        w = self.embed.out.weight
        x = self.embed(self.encoder_embedding(features.to(w.device, w.dtype))[None])  # (1, n, hidden)
        n = x.shape[1]
        if n > MAX_POSITIONS:  # chunks of MAX_POSITIONS, the last padded with zeros (and attended)
            x = F.pad(x, (0, 0, 0, -n % MAX_POSITIONS)).reshape(-1, MAX_POSITIONS, x.shape[-1])
        bias = self.relative_attention_bias_layer(x.shape[1], x.device).to(x.dtype)
        for block in self.encoders:
            x = block(x, bias)
        return x.reshape(-1, x.shape[-1])[:n]
