"""Rotary position embeddings, every rope type that transformers' Llama accepts.

The inverse frequencies follow transformers' `modeling_rope_utils` formulas so logits match the
reference. Two rope types depend on the whole sequence length in transformers, which a batch of
requests with shared KV cannot do; here they are made per position:
- `dynamic` (NTK): positions below `max_position` use the default frequencies (identical to
  transformers there); positions beyond it use a base scaled for the table's length.
- `longrope`: positions below `original_max_position_embeddings` use the short factors, the
  rest the long ones (transformers switches all positions once the sequence passes that length).
"""

from __future__ import annotations

import math

import torch
from sgl.kernels.rope import rope_applies, rope_neox_bf16_
from torch import nn

from ..config import RopeConfig


def _default_inv_freq(theta: float, dim: int) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def _llama3_inv_freq(inv_freq: torch.Tensor, p: dict) -> torch.Tensor:
    factor, low, high = p["factor"], p.get("low_freq_factor", 1.0), p.get("high_freq_factor", 4.0)
    old_len = p["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def _yarn_mscale(scale: float, m: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def yarn_softmax_scale(rope: RopeConfig) -> float:
    """What DeepSeek's yarn multiplies the attention score scale by: mscale(factor,
    mscale_all_dim) ** 2 where the config sets `mscale_all_dim` (the cos/sin tables carry
    mscale / mscale_all_dim, `_yarn_inv_freq`), else 1."""
    p = rope.params
    if rope.scaling_type == "default" or not p.get("mscale_all_dim"):
        return 1.0
    return _yarn_mscale(p["factor"], p["mscale_all_dim"]) ** 2


def _yarn_inv_freq(theta: float, dim: int, p: dict, max_position: int) -> tuple[torch.Tensor, float]:
    original = p.get("original_max_position_embeddings") or max_position
    factor = p.get("factor") or max_position / original

    attention_factor = p.get("attention_factor")
    if attention_factor is None:
        if p.get("mscale") and p.get("mscale_all_dim"):
            attention_factor = _yarn_mscale(factor, p["mscale"]) / _yarn_mscale(factor, p["mscale_all_dim"])
        else:
            attention_factor = _yarn_mscale(factor)
    beta_fast, beta_slow = p.get("beta_fast") or 32, p.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = theta ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention_factor)


def _longrope_tables(theta: float, dim: int, p: dict, max_position: int) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    original = p.get("original_max_position_embeddings") or max_position
    factor = p.get("factor") or max_position / original
    attention_factor = p.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    short = 1.0 / (torch.tensor(p["short_factor"], dtype=torch.float32) * theta**shape)
    long = 1.0 / (torch.tensor(p["long_factor"], dtype=torch.float32) * theta**shape)
    return short, long, float(attention_factor), original


def build_cos_sin(rope: RopeConfig, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (length, rotary_dim // 2), float32."""
    dim, p = rope.rotary_dim, rope.params
    positions = torch.arange(length, dtype=torch.float32)
    scale = 1.0
    kind = rope.scaling_type
    if kind == "longrope":
        short, long, scale, original = _longrope_tables(rope.theta, dim, p, rope.max_position)
        freqs = torch.where(positions[:, None] < original, positions[:, None] * short, positions[:, None] * long)
        return freqs.cos() * scale, freqs.sin() * scale
    if kind == "yarn":
        inv_freq, scale = _yarn_inv_freq(rope.theta, dim, p, rope.max_position)
    elif kind == "llama3":
        inv_freq = _llama3_inv_freq(_default_inv_freq(rope.theta, dim), p)
    elif kind == "linear":
        inv_freq = _default_inv_freq(rope.theta, dim) / p["factor"]
    elif kind == "dynamic" and length > rope.max_position:
        factor = p["factor"]
        base = rope.theta * ((factor * length / rope.max_position) - (factor - 1)) ** (dim / (dim - 2))
        short, long = _default_inv_freq(rope.theta, dim), _default_inv_freq(base, dim)
        freqs = torch.where(positions[:, None] < rope.max_position, positions[:, None] * short,
                            positions[:, None] * long)
        return freqs.cos(), freqs.sin()
    else:
        inv_freq = _default_inv_freq(rope.theta, dim)
    freqs = torch.outer(positions, inv_freq)
    return freqs.cos() * scale, freqs.sin() * scale


class RotaryEmbedding(nn.Module):
    """Applies rotary embeddings to q and k at the given positions.

    `interleaved=False` is the GPT-NeoX layout (rotate halves, Llama/HF convention);
    `interleaved=True` rotates adjacent pairs (GPT-J, some GGUF-native layouts)."""

    def __init__(self, rope: RopeConfig, head_dim: int, max_length: int, interleaved: bool = False) -> None:
        super().__init__()
        self.head_dim, self.rotary_dim, self.interleaved = head_dim, rope.rotary_dim, interleaved
        cos, sin = build_cos_sin(rope, max_length)
        self.register_buffer("cos", cos, persistent=False)  # (max_length, rotary_dim // 2)
        self.register_buffer("sin", sin, persistent=False)
        self._cached_for: torch.Tensor | None = None
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # NOTE: every layer of a forward pass calls with the same positions tensor; look it up once.
        if self._cached_for is not positions or self._cached is None or self._cached[0].dtype != dtype:
            cos = self.cos[positions].to(dtype)[:, None, :]  # (tokens, 1, rotary_dim // 2)
            sin = self.sin[positions].to(dtype)[:, None, :]
            self._cached_for, self._cached = positions, (cos, sin)
        return self._cached

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: (tokens, heads, head_dim); only the first rotary_dim channels rotate.
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        if self.interleaved:
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
            out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
        else:
            x1, x2 = rot.chunk(2, dim=-1)
            out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return torch.cat((out, rest), dim=-1) if rest.shape[-1] else out

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q: (tokens, q_heads * head_dim), k: (tokens, kv_heads * head_dim) -> same shapes."""
        cos, sin = self.cos_sin(positions, q.dtype)
        tokens, q_width = q.shape
        if not self.interleaved and _side_by_side(q, k):  # views of one fused qkv output
            heads = q.as_strided((tokens, (q_width + k.shape[1]) // self.head_dim, self.head_dim),
                                 (q.stride(0), self.head_dim, 1))  # (tokens, q_heads + kv_heads, head_dim)
            c, s = cos.view(tokens, -1), sin.view(tokens, -1)
            if rope_applies(heads, c, s, self.rotary_dim):
                rope_neox_bf16_(heads, c, s, self.rotary_dim)
                return q, k
        elif not self.interleaved and q.is_contiguous() and k.is_contiguous():  # each on its own (normed q/k)
            qh, kh = q.view(tokens, -1, self.head_dim), k.view(tokens, -1, self.head_dim)
            c, s = cos.view(tokens, -1), sin.view(tokens, -1)
            if rope_applies(qh, c, s, self.rotary_dim) and rope_applies(kh, c, s, self.rotary_dim):
                rope_neox_bf16_(qh, c, s, self.rotary_dim)
                rope_neox_bf16_(kh, c, s, self.rotary_dim)
                return q, k
        # q and k rotate together: one set of elementwise ops instead of two (decode is op-bound)
        qk = torch.cat((q.view(tokens, -1, self.head_dim), k.view(tokens, -1, self.head_dim)), dim=1)
        qk = self._rotate(qk, cos, sin).flatten(1)  # (tokens, (q_heads + kv_heads) * head_dim)
        return qk[:, :q_width], qk[:, q_width:]


class MRotaryEmbedding(RotaryEmbedding):
    """M-RoPE (Qwen2-VL): the rotary frequencies are split into `sections` (summing to
    rotary_dim // 2); section j rotates by axis j of (3, tokens) positions (temporal, height,
    width). 1-D positions (text only) rotate every section by the same position, which is
    plain rope.

    `interleaved` (Qwen3-VL): the axes take turns channel by channel (t, h, w, t, h, w, ...)
    while each has channels left (sections[j] of them), the rest temporal.
    `pairs` (GLM-4.1V): the rotation pairs adjacent channels (RotaryEmbedding's interleaved)."""

    def __init__(self, rope: RopeConfig, head_dim: int, max_length: int, sections: list[int],
                 interleaved: bool = False, pairs: bool = False) -> None:
        super().__init__(rope, head_dim, max_length, interleaved=pairs)
        if sum(sections) != self.rotary_dim // 2:
            raise ValueError(f"mrope_section={sections} must sum to rotary_dim // 2 = {self.rotary_dim // 2}")
        if interleaved:
            chan = torch.arange(self.rotary_dim // 2)
            axis = torch.zeros_like(chan)
            for j in (1, 2):  # channel c is axis j where c % 3 == j and c < 3 * sections[j]
                axis[(chan % 3 == j) & (chan < 3 * sections[j])] = j
        else:
            axis = torch.cat([torch.full((n,), i % 3) for i, n in enumerate(sections)])
        self.register_buffer("axis", axis, persistent=False)  # (rotary_dim // 2,) which position axis

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() == 1:
            return super().cos_sin(positions, dtype)
        if self._cached_for is not positions or self._cached is None or self._cached[0].dtype != dtype:
            chan = torch.arange(self.axis.shape[0], device=positions.device)
            # (3, tokens, half) -> channel c from axis axis[c]: (half, tokens) -> (tokens, 1, half)
            cos = self.cos[positions][self.axis, :, chan].T.to(dtype)[:, None, :]
            sin = self.sin[positions][self.axis, :, chan].T.to(dtype)[:, None, :]
            self._cached_for, self._cached = positions, (cos.contiguous(), sin.contiguous())
        return self._cached


def _side_by_side(q: torch.Tensor, k: torch.Tensor) -> bool:
    """q and k are slices of one buffer, k's columns right after q's (the rope kernel rotates
    both in place in one call)."""
    return (q.dtype == k.dtype and q.stride(1) == 1 and k.stride(1) == 1 and q.stride(0) == k.stride(0)
            and k.data_ptr() == q.data_ptr() + q.shape[1] * q.element_size())
