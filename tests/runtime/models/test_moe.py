"""The MoE layer's claims the zoo's parity test cannot see: decode at batch 1 runs only the
chosen experts (top_k products per MoE layer and step), prefill runs each chosen expert once
over all its tokens and the test prompt reaches most experts, and GPT-OSS's MXFP4 experts
dequantize as transformers does."""

from __future__ import annotations

import random

import pytest
import torch
from llama_fixtures import save_tiny_checkpoint
from sgl.runtime import Engine
from sgl.runtime.layers.moe import SparseMoE
from sgl.runtime.loader.mxfp4 import dequantize_mxfp4
from sgl.runtime.models.gpt_oss import GptOssForCausalLM
from zoo_configs import tiny_config


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory, default_tokenizer_folder):
    folder = str(tmp_path_factory.mktemp("mixtral"))
    cfg = tiny_config("MixtralForCausalLM")
    cfg.num_hidden_layers = 3
    return save_tiny_checkpoint(cfg, folder, default_tokenizer_folder), cfg


def test_decode_runs_only_the_chosen_experts(mixtral):
    folder, cfg = mixtral
    k, experts = cfg.num_experts_per_tok, cfg.num_local_experts
    rng = random.Random(1)
    ids = [rng.randrange(3, 40000) for _ in range(37)]
    with Engine(folder, dtype="float32", max_total_tokens=1024) as engine:
        moes = [m for m in engine._scheduler.runner.model.modules() if isinstance(m, SparseMoE)]
        assert len(moes) == cfg.num_hidden_layers
        seen: list[tuple[int, list[int], list[int], list[int]]] = []  # (tokens, calls before, after, chosen)
        before: dict[SparseMoE, list[int]] = {}

        def remember(module: SparseMoE, args) -> None:
            before[module] = list(module.experts.calls)

        def record(module: SparseMoE, args, output) -> None:
            x = args[0].reshape(-1, args[0].shape[-1])
            chosen = module.gate(x)[1]  # the router again: it runs no expert
            seen.append((x.shape[0], before.pop(module), list(module.experts.calls),
                         sorted(set(chosen.flatten().tolist()))))

        for m in moes:
            m.register_forward_pre_hook(remember)
            m.register_forward_hook(record)
        engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 8, "temperature": 0, "ignore_eos": True})
    prefill = [s for s in seen if s[0] == len(ids)]
    decode = [s for s in seen if s[0] == 1]
    assert len(prefill) == cfg.num_hidden_layers and len(decode) == 7 * cfg.num_hidden_layers
    for tokens, before, after, chosen in seen:
        ran = [e for e in range(experts) if after[e] != before[e]]
        assert all(after[e] - before[e] == 1 for e in ran)  # one product per active expert
        assert ran == chosen  # exactly the chosen ones: the others are never read
        if tokens == 1:
            assert sum(after) - sum(before) == k
    assert all(len(s[3]) >= experts - 2 for s in prefill)  # the prompt routes to most experts


def _quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random MXFP4 blocks and scales for a (..., rows, cols) tensor's shape."""
    *lead, rows, cols = w.shape
    blocks = torch.randint(0, 256, (*lead, rows, cols // 32, 16), dtype=torch.uint8)
    scales = torch.randint(120, 130, (*lead, rows, cols // 32), dtype=torch.uint8)
    return blocks, scales


def test_mxfp4_dequantizes_as_transformers():
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    torch.manual_seed(0)
    blocks, scales = _quantize(torch.empty(3, 8, 64))
    theirs = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)  # (E, cols, rows)
    torch.testing.assert_close(dequantize_mxfp4(blocks, scales), theirs.transpose(1, 2), rtol=0, atol=0)
    with pytest.raises(ValueError, match="MXFP4 blocks"):
        dequantize_mxfp4(blocks.int(), scales)


def test_gpt_oss_loads_mxfp4_experts_like_unquantized_ones():
    """The MXFP4 pair and its dequantized tensor in the checkpoint's own layout convert to the
    same stacked experts."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    torch.manual_seed(0)
    prefix = "model.layers.0.mlp.experts."
    gu_b, gu_s = _quantize(torch.empty(2, 16, 32))  # (E, 2I, H)
    d_b, d_s = _quantize(torch.empty(2, 32, 64))  # (E, H, I)
    quantized = [(prefix + "gate_up_proj_blocks", gu_b), (prefix + "down_proj_scales", d_s),
                 (prefix + "gate_up_proj_scales", gu_s), (prefix + "down_proj_blocks", d_b)]
    plain = [(prefix + "gate_up_proj", convert_moe_packed_tensors(gu_b, gu_s, dtype=torch.float32)),
             (prefix + "down_proj", convert_moe_packed_tensors(d_b, d_s, dtype=torch.float32))]
    model = GptOssForCausalLM.__new__(GptOssForCausalLM)
    ours, ref = dict(model.transform_weights(quantized)), dict(model.transform_weights(plain))
    assert sorted(ours) == sorted(ref) == [prefix + "w13_weight", prefix + "w2_weight"]
    for name in ours:
        torch.testing.assert_close(ours[name], ref[name], rtol=0, atol=0)
    with pytest.raises(ValueError, match="without their pair"):
        list(model.transform_weights(quantized[:1]))


def test_group_limited_greedy_routes_as_deepseek_v2():
    """group_score="max" (DeepSeek V2's group_limited_greedy) picks the experts and weights
    transformers' DeepSeek V2 router picks."""
    from sgl.runtime.layers.moe_router import RouterSpec, select_experts
    from transformers import DeepseekV2Config
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter

    config = DeepseekV2Config(hidden_size=32, n_routed_experts=16, num_experts_per_tok=3, n_group=4, topk_group=2,
                              topk_method="group_limited_greedy", routed_scaling_factor=1.5)
    torch.manual_seed(0)
    theirs = DeepseekV2TopkRouter(config)
    torch.nn.init.normal_(theirs.weight, std=0.1)  # flat scores: a group's best and best two disagree
    x = torch.randn(64, 32)
    logits, weights, ids = theirs(x)
    spec = RouterSpec(16, 3, n_group=4, topk_group=2, group_score="max", routed_scaling_factor=1.5)
    our_weights, our_ids = select_experts(logits, spec)
    order, our_order = ids.argsort(-1), our_ids.argsort(-1)
    assert torch.equal(ids.gather(1, order), our_ids.gather(1, our_order))
    torch.testing.assert_close(weights.gather(1, order), our_weights.gather(1, our_order))
    with pytest.raises(ValueError, match="group_score"):
        RouterSpec(16, 3, group_score="mean")
