"""The Whisper-style audio encoder of Qwen2-Audio: log-mel frames -> two convolutions (the
second stride 2) with GELU, learned positions, the pre-norm encoder layers of the CLIP tower
(layers/vision.py: the same LayerNorm / attention / fc1-fc2 layout; Whisper's k_proj has no
bias, so the model loads a zero one), average pooling by 2, a final LayerNorm.

A clip is always its processor's full padded length (Whisper's 30 s); keys past the clip's
real frames are masked, as transformers does, and the caller keeps only the real rows."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..multimodal.towers import AudioTowerConfig, VisionTowerConfig
from .norm import LayerNorm
from .vision import CLIPEncoderLayer

NORM_EPS = 1e-5  # torch's LayerNorm default, which Whisper's layers use


def encoder_layer_config(c: AudioTowerConfig) -> VisionTowerConfig:
    """The fields CLIPEncoderLayer reads (width, heads, MLP, norm eps, activation)."""
    return VisionTowerConfig(hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                             num_layers=c.num_layers, num_heads=c.num_heads, image_size=0, patch_size=1,
                             num_channels=c.num_mel_bins, norm_eps=NORM_EPS, hidden_act=c.hidden_act)


def conv_lengths(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real mel frames -> (real positions after the stride-2 convolution, rows after pooling)."""
    after_conv = (frames - 1) // 2 + 1
    return after_conv, (after_conv - 2) // 2 + 1


class WhisperAudioTower(nn.Module):
    """Names follow the checkpoint's `audio_tower.*` (conv1, conv2, embed_positions, layers,
    layer_norm; a layer's self_attn_layer_norm / final_layer_norm / fc1 / fc2 are renamed by
    the model to the CLIP layer's layer_norm1 / layer_norm2 / mlp.fc1 / mlp.fc2)."""

    def __init__(self, c: AudioTowerConfig) -> None:
        super().__init__()
        self.config = c
        d = c.hidden_size
        self.conv1 = nn.Conv1d(c.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(c.max_source_positions, d)
        layer = encoder_layer_config(c)
        self.layers = nn.ModuleList(CLIPEncoderLayer(layer) for _ in range(c.num_layers))
        self.layer_norm = LayerNorm(d, NORM_EPS)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """features (clips, mels, 2 * max_source_positions), frames (clips,) real mel frames ->
        (clips, max_source_positions // 2, hidden); rows past a clip's pooled length are padding."""
        c = self.config
        if features.shape[-1] != 2 * c.max_source_positions:
            raise ValueError(f"audio_data: the encoder takes {2 * c.max_source_positions} mel frames a clip, "
                             f"the processor gave {features.shape[-1]}")
        w = self.conv1.weight
        x = F.gelu(self.conv1(features.to(w.device, w.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (clips, positions, hidden)
        x = x + self.embed_positions.weight
        real, _ = conv_lengths(frames.to(x.device))
        key_mask = (torch.arange(x.shape[1], device=x.device)[None, :] < real[:, None])[:, None, None, :]
        for layer in self.layers:
            x = layer(x, key_mask)
        x = F.avg_pool1d(x.transpose(1, 2), 2, 2).transpose(1, 2)
        return self.layer_norm(x)
