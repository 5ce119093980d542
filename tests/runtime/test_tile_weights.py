"""Packing a loaded bf16 model's weights for the tile kernel (runtime/layers/linear.py:
pack_tile_weights): every linear is packed and its (N, K) weight dropped, gate/up in the gated
layout, and the model computes what it computed before packing, up to bf16 rounding."""

from __future__ import annotations

import copy

import torch
from sgl.runtime.layers.linear import Linear, pack_tile_weights
from sgl.runtime.models.llama import LlamaMLP


def test_mlp_and_linears_pack_and_compute_as_before(tile_kernels) -> None:
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        mlp, lone = LlamaMLP(64, 96, "silu", bias=False), Linear(64, 40, bias=True)
    finally:
        torch.set_default_dtype(previous)
    for p in (*mlp.parameters(), *lone.parameters()):
        p.data.normal_(0, 0.1)
    before_mlp, before_lone = copy.deepcopy(mlp), copy.deepcopy(lone)
    model = torch.nn.ModuleDict({"mlp": mlp, "lone": lone})
    assert pack_tile_weights(model) == 3  # gate/up, down, and the lone linear (bias and an odd N)
    assert mlp.gate_up_proj.gated_tiles and mlp.gate_up_proj.weight is None and lone.weight is None
    x, residual = torch.randn(37, 64, dtype=torch.bfloat16), torch.randn(37, 64, dtype=torch.bfloat16)
    torch.testing.assert_close(mlp(x, residual), before_mlp(x, residual), atol=0.05, rtol=0.02)
    torch.testing.assert_close(lone(x), before_lone(x), atol=0.05, rtol=0.02)
    assert pack_tile_weights(model) == 3  # packing twice changes nothing


def test_float32_and_unpackable_shapes_stay_as_loaded(tile_kernels) -> None:
    wide, odd = Linear(64, 32), Linear(48, 32).to(torch.bfloat16)  # float32; K % 32 != 0
    assert pack_tile_weights(torch.nn.ModuleList([wide, odd])) == 0
    assert wide.weight is not None and odd.weight is not None


def test_engine_packs_the_default_model(tile_kernels) -> None:
    from sgl.runtime import Engine

    with Engine(dtype="bfloat16", max_total_tokens=512) as engine:
        model = engine._scheduler.runner.model
        linears = [m for m in model.modules() if isinstance(m, Linear)]
        assert linears and all(m.tiles is not None for m in linears)
        out = engine.generate("The capital of France is", {"max_new_tokens": 4, "temperature": 0})
        assert "Paris" in out["text"]
