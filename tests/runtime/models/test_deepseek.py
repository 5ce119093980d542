"""DeepSeek's latent KV pool: what one token costs (reported by get_server_info) for the real
DeepSeek-V3 attention dims, how many more tokens the same bytes hold than per-head keys and
values would, and retraction over the latent pool; its experts: the first layer dense, the zoo
prompt routes to most experts, a decode step at batch 1 runs top_k per MoE layer (parity with
transformers lives in test_model_zoo.py)."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest
import torch
from llama_fixtures import Reference, save_tiny_checkpoint
from sgl.runtime import Engine, memory
from sgl.runtime.cache import MHAKVPool, MLAKVPool
from sgl.runtime.config import EngineConfig
from sgl.runtime.layers.moe import FusedExperts, SparseMoE
from zoo_configs import checkpoint_edit, tiny_config

# DeepSeek-V3's attention (config.json of deepseek-ai/DeepSeek-V3)
V3_LAYERS, V3_HEADS, V3_RANK, V3_ROPE, V3_NOPE, V3_V = 61, 128, 512, 64, 128, 128


@pytest.fixture(scope="module")
def v3_shaped(tmp_path_factory, default_tokenizer_folder):
    """A checkpoint with V3's latent dims and 61 layers; narrow everywhere the KV does not look
    (hidden 64, 2 heads, dense MLPs) so it builds in seconds."""
    from transformers import DeepseekV3Config

    cfg = DeepseekV3Config(vocab_size=49152, hidden_size=64, intermediate_size=32, num_hidden_layers=V3_LAYERS,
                           num_attention_heads=2, num_key_value_heads=2, kv_lora_rank=V3_RANK,
                           qk_rope_head_dim=V3_ROPE, q_lora_rank=32, qk_nope_head_dim=16, v_head_dim=16,
                           first_k_dense_replace=V3_LAYERS, n_routed_experts=4, n_group=1, topk_group=1,
                           num_experts_per_tok=1, moe_intermediate_size=16, max_position_embeddings=256,
                           bos_token_id=1, eos_token_id=2, architectures=["DeepseekV3ForCausalLM"])
    folder = str(tmp_path_factory.mktemp("v3_shaped"))
    return save_tiny_checkpoint(cfg, folder, default_tokenizer_folder)


def test_v3_shaped_config_reports_latent_bytes_per_token(v3_shaped):
    with Engine(v3_shaped, dtype="bfloat16", max_total_tokens=256) as engine:
        info = engine.get_server_info()
        assert info["kv_pool"] == "MLAKVPool"
        assert info["kv_bytes_per_token"] == (V3_RANK + V3_ROPE) * V3_LAYERS * 2
        pool = engine._pool
        allocated = sum(pool.keys(i).numel() * pool.keys(i).element_size() for i in range(V3_LAYERS))
        assert allocated == (info["max_total_tokens"] + 1) * info["kv_bytes_per_token"]  # + slot 0
        out = engine.generate(input_ids=list(range(5, 25)), sampling_params={"max_new_tokens": 4, "temperature": 0})
        assert len(out["output_ids"]) == 4


def test_same_bytes_hold_that_many_times_more_tokens_than_mha(monkeypatch):
    """The memory sizing (memory.choose_num_slots) in tokens of each layout, for V3's dims."""
    mla = MLAKVPool(V3_LAYERS, V3_RANK, V3_ROPE, torch.bfloat16)
    mha = MHAKVPool(V3_LAYERS, V3_HEADS, V3_NOPE + V3_ROPE, torch.bfloat16, v_head_dim=V3_V)
    assert mla.bytes_per_token() == (512 + 64) * 61 * 2
    assert mha.bytes_per_token() == 128 * (192 + 128) * 61 * 2
    ratio = mha.bytes_per_token() / mla.bytes_per_token()  # per layer 128 * 320 / 576
    assert round(ratio, 2) == 71.11

    budget = 8 << 30
    monkeypatch.setattr(memory, "_available_bytes", lambda device: budget)
    cfg = EngineConfig(mem_fraction_static=1.0)
    mla_slots = memory.choose_num_slots(cfg, mla, torch.device("cpu"), context_length=64)
    mha_slots = memory.choose_num_slots(cfg, mha, torch.device("cpu"), context_length=64)
    assert (mla_slots, mha_slots) == (budget // mla.bytes_per_token(), budget // mha.bytes_per_token())
    assert mla_slots / mha_slots == pytest.approx(ratio, rel=2e-3)  # the floors' rounding only


@pytest.fixture(scope="module")
def v3_tiny(tmp_path_factory, default_tokenizer_folder) -> str:
    """The zoo's V3 checkpoint: layer 0 dense, layers 1-2 with 8 experts (top 2) in 4 groups."""
    arch = "DeepseekV3ForCausalLM"
    folder = str(tmp_path_factory.mktemp("v3_tiny"))
    return save_tiny_checkpoint(tiny_config(arch), folder, default_tokenizer_folder, edit=checkpoint_edit(arch))


def _experts(engine: Engine) -> list[FusedExperts]:
    return [m for m in engine._scheduler.runner.model.modules() if isinstance(m, FusedExperts)]


def test_experts_after_the_dense_layers_and_decode_runs_only_the_chosen(v3_tiny):
    """Layer 0 is dense (first_k_dense_replace=1), layers 1-2 MoE with a shared expert; the
    zoo's 37-token prompt routes to most of the 8 experts; each decode step at batch 1 runs
    exactly top_k (2) experts per MoE layer."""
    rng = random.Random(1)
    ids = [rng.randrange(3, 40000) for _ in range(37)]  # the zoo's prompt (test_model_zoo.tokens(37, seed=1))
    with Engine(v3_tiny, dtype="float32", max_total_tokens=512) as engine:
        layers = engine._scheduler.runner.model.model.layers
        assert [isinstance(layer.mlp, SparseMoE) for layer in layers] == [False, True, True]
        assert all(layer.mlp.shared_expert is not None for layer in layers[1:])
        experts = _experts(engine)
        engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 0})
        used = [sum(c > 0 for c in e.calls) for e in experts]
        assert min(used) >= 6, used
        steps, greedy = 5, {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}
        engine.generate(input_ids=ids[:9], sampling_params=greedy)  # caches the prompt
        before = [sum(e.calls) for e in experts]
        engine.generate(input_ids=ids[:9], sampling_params=greedy)
        runs = [sum(e.calls) - b for e, b in zip(experts, before)]
        # all but the last prompt token cached: one token's pass (2 experts), then 5 decode steps
        assert runs == [2 * (1 + steps)] * 2, runs


def test_layers_past_num_hidden_layers_are_skipped(v3_tiny, tmp_path):
    """A V3/R1 checkpoint keeps its multi-token-prediction layer after the last decoder layer:
    the same 3-layer weights load as a 2-layer model, layer 2 ignored."""
    for name in os.listdir(v3_tiny):
        shutil.copy(os.path.join(v3_tiny, name), tmp_path)
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    config["num_hidden_layers"] = 2
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    with Engine(str(tmp_path), dtype="float32", max_total_tokens=256) as engine:
        assert len(engine._scheduler.runner.model.model.layers) == 2
        assert len(engine.generate(input_ids=list(range(5, 15)), sampling_params={"max_new_tokens": 2})["output_ids"]) == 2


def test_retraction_on_the_latent_pool(v3_tiny):
    """Decode runs out of latent slots, requests are retracted and resumed: same tokens and
    logprobs as transformers, slot invariants intact."""
    folder = v3_tiny
    ref = Reference(folder)
    rng = random.Random(8)
    batch = [[rng.randrange(3, 40000) for _ in range(rng.randrange(5, 30))] for _ in range(6)]
    greedy = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
    demand = sum(len(p) + 16 for p in batch)
    with Engine(folder, dtype="float32", max_total_tokens=demand // 2) as engine:
        results = engine.generate(input_ids=batch, sampling_params=greedy, return_logprob=True)
        assert engine.get_server_info()["retractions"] > 0
        for ids, res in zip(batch, results):
            ours = torch.tensor([r[0] for r in res["meta_info"]["input_token_logprobs"][1:]])
            torch.testing.assert_close(ours, ref.prompt_logprobs(ids), atol=1e-4, rtol=0)
            assert res["output_ids"] == ref.greedy(ids, 16)
        engine.check_kv()
