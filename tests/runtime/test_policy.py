"""Queue policies: every policy gives the same greedy outputs; lpm and dfs-weight order by the
radix tree."""

from __future__ import annotations

import random

import pytest
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine
from sgl.runtime.cache import RadixCache, SlotAllocator
from sgl.runtime.scheduler.policy import order_waiting


class FakeReq:
    def __init__(self, ids: list[int]) -> None:
        self.fill_ids = ids


def tree_with(*keys: list[int]) -> RadixCache:
    allocator = SlotAllocator(100)
    tree = RadixCache(allocator)
    for k in keys:
        slots = allocator.alloc(len(k))
        allocator.free(slots[: tree.insert(k, slots)])
    return tree


def test_lpm_puts_longest_cached_prefix_first():
    tree = tree_with([1, 2, 3, 4, 5], [7, 8])
    a, b, c = FakeReq([9, 9]), FakeReq([7, 8, 1]), FakeReq([1, 2, 3, 4, 6])
    assert order_waiting([a, b, c], "lpm", tree) == [c, b, a]
    assert order_waiting([a, b, c], "fcfs", tree) == [a, b, c]


def test_dfs_weight_groups_requests_by_subtree():
    tree = tree_with([1, 2, 3], [1, 2, 4], [5, 6])
    reqs = [FakeReq([5, 6, 0]), FakeReq([1, 2, 3, 0]), FakeReq([1, 2, 4, 0]), FakeReq([1, 2, 3, 1])]
    order = order_waiting(reqs, "dfs-weight", tree)
    assert order[-1] is reqs[0]  # the lighter subtree [5, 6] comes last
    assert {id(r) for r in order[:3]} == {id(r) for r in reqs[1:]}


@pytest.mark.parametrize("policy", ["lpm", "dfs-weight", "fcfs"])
def test_policies_agree_on_greedy_outputs(policy, tmp_path_factory, default_tokenizer_folder):
    folder = str(tmp_path_factory.mktemp("policy"))
    save_tiny_checkpoint(tiny_llama_config("plain"), folder, default_tokenizer_folder)
    rng = random.Random(0)
    header = [rng.randrange(3, 40000) for _ in range(30)]
    batch = [header + [rng.randrange(3, 40000) for _ in range(rng.randrange(1, 10))] for _ in range(12)]
    params = {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True}
    with Engine(folder, dtype="float32", schedule_policy=policy, max_prefill_tokens=64) as engine:
        engine.generate(input_ids=header, sampling_params={"max_new_tokens": 0})
        outs = [r["output_ids"] for r in engine.generate(input_ids=batch, sampling_params=params)]
        engine.check_kv()
    with Engine(folder, dtype="float32", disable_radix_cache=True) as plain:
        expected = [plain.generate(input_ids=ids, sampling_params=params)["output_ids"] for ids in batch]
        assert plain.get_server_info()["cached_tokens"] == 0
        plain.check_kv()
    assert outs == expected
