"""Data parallelism: two engine replicas behind `DataParallelEngine`. 64 requests in 8 groups that
share 8 long prefixes, sent in waves of 2 (each round of 8 visits every group once, in a shuffled
order; with 2, round robin gives each replica one request at a time, so its hit rate does not
depend on how a replica happens to batch two arrivals: waves of 4 gave 0.37 to 0.45), on replicas whose KV pool holds about 4
of the prefixes: cache-aware routing keeps each group on one replica, so its hit rate (cached tokens / prompt tokens) is at least twice round
robin's, which makes every replica see every group and evict; outputs equal one engine's."""

from __future__ import annotations

import random

import pytest
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine
from sgl.runtime.distributed.data_parallel import DataParallelEngine
from sgl.runtime.distributed.prefix_router import PrefixRouter

GREEDY = {"max_new_tokens": 2, "temperature": 0, "ignore_eos": True}
PREFIX, GROUPS, ROUNDS, WAVE = 160, 8, 8, 2
REPLICA_TOKENS = 700  # about 4 prefixes of 160 tokens and the requests in flight


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder) -> str:
    return save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path_factory.mktemp("dp")),
                                default_tokenizer_folder)


def _waves() -> list[list[list[int]]]:
    rng = random.Random(0)
    prefixes = [[rng.randrange(3, 40000) for _ in range(PREFIX)] for _ in range(GROUPS)]
    prompts = []
    for r in range(ROUNDS):
        order = list(range(GROUPS))
        rng.shuffle(order)
        prompts += [prefixes[g] + [100 + r, 200 + g] for g in order]
    return [prompts[i : i + WAVE] for i in range(0, len(prompts), WAVE)]


def _run(engine) -> tuple[list[list[int]], float]:
    outs = [o for wave in _waves() for o in engine.generate(input_ids=wave, sampling_params=GREEDY)]
    cached = sum(o["meta_info"]["cached_tokens"] for o in outs)
    return [o["output_ids"] for o in outs], cached / sum(o["meta_info"]["prompt_tokens"] for o in outs)


def test_cache_aware_routing_beats_round_robin(folder):
    with Engine(folder, dtype="float32") as one:
        want, _ = _run(one)
    rates = {}
    for policy in ("cache_aware", "round_robin"):
        with DataParallelEngine(folder, dp_size=2, load_balance_method=policy, dtype="float32",
                                max_total_tokens=REPLICA_TOKENS) as dp:
            got, rates[policy] = _run(dp)
            assert got == want, policy
            info = dp.get_server_info()
            assert info["dp_size"] == 2 and len(info["replicas"]) == 2 and info["replica_loads"] == [0, 0]
            dp.check_kv()
    assert rates["cache_aware"] >= 2 * rates["round_robin"], rates


def test_router_keeps_prefixes_together_and_balances_under_load():
    router = PrefixRouter(2, balance_abs=4)
    a, b = list(range(100)), list(range(1000, 1100))
    first = router.choose(a)
    assert router.choose(b) != first  # a new prefix goes to the replica caching least
    assert router.choose(a + [7, 8]) == first  # a shared prefix follows its replica
    for _ in range(4):
        assert router.choose(a + [9]) == first  # 6 in flight there, 1 on the other
    assert router.choose(a + [10]) != first  # balanced under load, whatever the cache holds
    router.done(first)
    assert router.loads == ([5, 2] if first == 0 else [2, 5])


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="load_balance_method='fastest'"):
        PrefixRouter(2, "fastest")
    with pytest.raises(ValueError, match="dp_size=2 with tp_size=2"):
        DataParallelEngine("unused", dp_size=2, tp_size=2)  # refused before loading
