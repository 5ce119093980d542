"""RadixCache against a naive model: random insert / match / lock / evict sequences keep
check_integrity() true and agree with a dict of every cached prefix."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sgl.runtime.cache import RadixCache, SlotAllocator

POOL = 400
keys = st.lists(st.integers(0, 3), min_size=1, max_size=12)  # tiny alphabet: many shared prefixes
ops = st.lists(st.tuples(st.sampled_from(["insert", "match", "lock", "unlock", "evict"]), keys,
                         st.integers(1, 40)), max_size=60)


class Naive:
    """prefix tuple -> slot of its last token, for every cached prefix."""

    def __init__(self) -> None:
        self.slot: dict[tuple[int, ...], int] = {}

    def match(self, key: list[int]) -> list[int]:
        out = []
        for i in range(1, len(key) + 1):
            if tuple(key[:i]) not in self.slot:
                break
            out.append(self.slot[tuple(key[:i])])
        return out


@settings(max_examples=200, deadline=None)
@given(ops)
def test_random_operations_match_naive_model(operations):
    allocator = SlotAllocator(POOL)
    tree = RadixCache(allocator)
    naive = Naive()
    locked: list[tuple[object, list[int]]] = []
    for op, key, n in operations:
        if op == "insert":
            slots = allocator.alloc(len(key))
            if slots is None:
                continue
            already = tree.insert(key, slots)
            assert already == len(naive.match(key))
            allocator.free(slots[:already])  # the caller frees its duplicates
            for i in range(already, len(key)):
                naive.slot[tuple(key[: i + 1])] = int(slots[i])
        elif op == "match":
            m = tree.match_prefix(key)
            assert m.slots.tolist() == naive.match(key)
        elif op == "lock":
            m = tree.match_prefix(key)
            tree.lock(m.node)
            locked.append((m.node, key[: len(m.slots)]))
        elif op == "unlock" and locked:
            node, _ = locked.pop(n % len(locked))
            tree.unlock(node)
        elif op == "evict":
            before = allocator.available()
            freed = tree.evict(n)
            assert allocator.available() - before == freed
            assert freed >= n or tree.evictable_size() == 0
            # drop from the naive model whatever the tree no longer holds
            for prefix in list(naive.slot):
                if len(tree.match_prefix(list(prefix)).slots) < len(prefix):
                    del naive.slot[prefix]
        assert tree.check_integrity()
        for _, path in locked:  # a locked path is never evicted
            assert len(tree.match_prefix(path).slots) == len(path)
        assert allocator.available() + tree.total_size() == POOL


def test_split_and_lru_eviction_order():
    allocator = SlotAllocator(100)
    tree = RadixCache(allocator)
    a, b = [1, 2, 3, 4], [1, 2, 9, 9]
    tree.insert(a, allocator.alloc(4))
    dup = allocator.alloc(4)
    assert tree.insert(b, dup) == 2  # [1, 2] was cached: the edge splits
    allocator.free(dup[:2])
    assert tree.total_size() == 6 and tree.check_integrity()
    tree.match_prefix(a)  # a is now the most recently used
    assert tree.evict(1) == 2  # b's leaf [9, 9] goes first
    assert len(tree.match_prefix(a).slots) == 4 and len(tree.match_prefix(b).slots) == 2
    m = tree.match_prefix(a)
    tree.lock(m.node)
    assert tree.evict(100) == 0 and tree.protected_size() == 4
    tree.unlock(m.node)
    assert tree.evict(100) == 4 and tree.total_size() == 0
    assert allocator.available() == 100


def test_disabled_cache_takes_nothing():
    allocator = SlotAllocator(10)
    tree = RadixCache(allocator, disable=True)
    slots = allocator.alloc(3)
    assert tree.insert([1, 2, 3], slots) == 3
    assert len(tree.match_prefix([1, 2, 3]).slots) == 0
    assert torch.equal(tree.all_slots(), torch.empty(0, dtype=torch.int64))
