"""Activations, including the gated forms that consume a fused gate/up projection."""

from __future__ import annotations

from collections.abc import Callable

import torch
from sgl.kernels.activation import add_bf16, gelu_tanh_mul_bf16, silu_mul_applies, silu_mul_bf16
from torch.nn import functional as F


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_new": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_python": F.gelu,
    "relu": F.relu,
    "relu2": lambda x: F.relu(x).square(),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),  # CLIP
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def gated(act: Callable[[torch.Tensor], torch.Tensor], gate_up: torch.Tensor) -> torch.Tensor:
    """act(gate) * up for a fused (..., 2 * intermediate) tensor."""
    if act in (F.silu, gelu_tanh) and silu_mul_applies(gate_up):
        return silu_mul_bf16(gate_up) if act is F.silu else gelu_tanh_mul_bf16(gate_up)
    gate, up = gate_up.chunk(2, dim=-1)
    return act(gate) * up


def residual_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + y; bf16 on the CPU in one kernel pass (torch's add runs ~2x slower at prefill sizes)."""
    out = add_bf16(x, y)
    return x + y if out is None else out
