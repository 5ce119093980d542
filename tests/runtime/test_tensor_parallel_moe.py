"""Tensor parallelism for mixtures of experts and latent attention (gloo, real worker
processes): tp_size=2 gives the greedy tokens of tp_size=1 and prompt logprobs within 1e-4
(float32), alone, batched, on a cached prefix and in chunks, for Qwen2-MoE (a dense first
layer, a gated shared expert), Mixtral (sliding window) and DeepSeek V2 (MLA with q from one
projection, a dense first layer, group-limited routing, a shared expert) and V3 (low-rank q,
sigmoid grouped routing, a random correction bias), and GPT-OSS (stacked experts with biases:
the down bias added once; attention sinks split by head): each expert split by features, the
router and the latent KV pool replicated. One tp=2 engine per model, shared by every assertion."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from llama_fixtures import save_tiny_checkpoint
from sgl.runtime import Engine
from tp_checks import ARGS, check_alone_batched_and_chunked, check_cached_prefix, weight_bytes

sys.path.insert(0, str(Path(__file__).parent / "models"))
from zoo_configs import checkpoint_edit, tiny_config  # noqa: E402

ARCHS = ["Qwen2MoeForCausalLM", "MixtralForCausalLM", "GptOssForCausalLM", "DeepseekV2ForCausalLM",
         "DeepseekV3ForCausalLM"]


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, tmp_path_factory, default_tokenizer_folder):
    """(tp=1 engine, tp=2 engine) on the same tiny random checkpoint."""
    folder = save_tiny_checkpoint(tiny_config(request.param), str(tmp_path_factory.mktemp(request.param)),
                                  default_tokenizer_folder, edit=checkpoint_edit(request.param))
    one = Engine(folder, **ARGS)
    two = Engine(folder, tp_size=2, **ARGS)
    yield one, two
    two.shutdown()
    one.shutdown()


def test_alone_batched_and_chunked(pair):
    check_alone_batched_and_chunked(*pair)


def test_cached_prefix(pair):
    check_cached_prefix(*pair)


def test_rank_holds_its_share(pair):
    one, two = pair
    assert 0.45 < weight_bytes(two) / weight_bytes(one) < 0.6  # norms, routers and latents whole on each rank
    assert type(two._pool) is type(one._pool)  # MLAKVPool for DeepSeek: the latent pool, whole on each rank
    assert two.get_server_info()["tp_size"] == 2
