"""Parity with transformers on tiny random Llama checkpoints, in float32: prompt logprobs within
1e-4 and 32 identical greedy tokens, for a single request, a batch of 8 prompts of different
lengths, a cached prefix, a chunked prefill, and requests retracted under a small KV pool."""

from __future__ import annotations

import random

import pytest
import torch
from llama_fixtures import Reference, save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine

VARIANTS = ["plain", "gqa_llama3_tied_bias"]
GREEDY = {"max_new_tokens": 32, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module", params=VARIANTS)
def checkpoint(request, tmp_path_factory, default_tokenizer_folder):
    folder = str(tmp_path_factory.mktemp(request.param))
    save_tiny_checkpoint(tiny_llama_config(request.param), folder, default_tokenizer_folder)
    return folder, Reference(folder)


def prompts(n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 40000) for _ in range(rng.randrange(5, 60))] for _ in range(n)]


def assert_matches(result: dict, ids: list[int], ref: Reference) -> None:
    rows = result["meta_info"]["input_token_logprobs"]
    assert rows[0][0] is None and [r[1] for r in rows] == ids
    ours = torch.tensor([r[0] for r in rows[1:]])
    torch.testing.assert_close(ours, ref.prompt_logprobs(ids), atol=1e-4, rtol=0)
    assert result["output_ids"] == ref.greedy(ids, 32)


def test_single_and_batch_of_8(checkpoint):
    folder, ref = checkpoint
    with Engine(folder, dtype="float32") as engine:
        single = prompts(1, seed=1)[0]
        assert_matches(engine.generate(input_ids=single, sampling_params=GREEDY, return_logprob=True), single, ref)
        batch = prompts(8, seed=2)
        assert len({len(p) for p in batch}) > 4
        for ids, res in zip(batch, engine.generate(input_ids=batch, sampling_params=GREEDY, return_logprob=True)):
            assert_matches(res, ids, ref)
        engine.check_kv()


def test_cached_prefix(checkpoint):
    folder, ref = checkpoint
    with Engine(folder, dtype="float32") as engine:
        base = prompts(1, seed=3)[0] + prompts(1, seed=4)[0]
        engine.generate(input_ids=base, sampling_params={"max_new_tokens": 0})
        longer = base + [17, 18, 19, 20]
        res = engine.generate(input_ids=longer, sampling_params=GREEDY)
        assert res["meta_info"]["cached_tokens"] == len(base)
        assert res["output_ids"] == ref.greedy(longer, 32)
        # logprobs from position 0 force a recompute of the cached part, and must still match
        assert_matches(engine.generate(input_ids=longer, sampling_params=GREEDY, return_logprob=True), longer, ref)
        engine.check_kv()


def test_chunked_prefill(checkpoint):
    folder, ref = checkpoint
    with Engine(folder, dtype="float32", chunked_prefill_size=16) as engine:
        ids = prompts(1, seed=5)[0] + prompts(1, seed=6)[0] + prompts(1, seed=7)[0]
        assert len(ids) > 48
        assert_matches(engine.generate(input_ids=ids, sampling_params=GREEDY, return_logprob=True), ids, ref)
        assert engine.get_server_info()["steps"] >= 32 + len(ids) // 16
        engine.check_kv()


def test_retraction_under_small_pool(checkpoint):
    folder, ref = checkpoint
    batch = prompts(8, seed=8)
    demand = sum(len(p) + 32 for p in batch)
    with Engine(folder, dtype="float32", max_total_tokens=demand // 2) as engine:
        results = engine.generate(input_ids=batch, sampling_params=GREEDY, return_logprob=True)
        assert engine.get_server_info()["retractions"] > 0
        for ids, res in zip(batch, results):
            assert_matches(res, ids, ref)
        engine.check_kv()
