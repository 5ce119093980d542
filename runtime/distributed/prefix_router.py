"""Which data-parallel replica serves a prompt: cache-aware routing, as sglang-router's policy.

Each replica has an approximate picture of what its radix cache holds: the chained hashes of the
prompts' fixed-size blocks routed to it (block i's hash covers blocks 0..i, so a hit on block i
means the whole prefix up to it matched), kept in LRU order and bounded by about the replica's
KV capacity, so old prefixes fall out as the replica's own cache evicts them.

cache_aware: when the loads are balanced, a prompt whose longest matched prefix covers at least
`cache_threshold` of it goes to the replica that matched most; a prompt matching nowhere goes to
the replica caching least (new prefixes spread out). When one replica's load (requests in flight)
exceeds the lightest one's by more than `balance_abs` and by a factor over `balance_rel`, the
lightest takes the prompt whatever it holds (balanced under load).
round_robin and shortest_queue ignore the cache (for comparison, and for embedding models)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

POLICIES = ("cache_aware", "round_robin", "shortest_queue")
BLOCK_TOKENS = 16  # routing granularity for token ids
BLOCK_CHARS = 64  # and for text (about as many tokens)


def block_hashes(key: str | Sequence[int]) -> list[int]:
    """Chained hashes of key's full blocks: entry i identifies blocks 0..i."""
    size = BLOCK_CHARS if isinstance(key, str) else BLOCK_TOKENS
    out, h = [], 0
    for start in range(0, len(key) - size + 1, size):
        h = hash((h, key[start : start + size] if isinstance(key, str) else tuple(key[start : start + size])))
        out.append(h)
    return out


class _Tree:
    """One replica's routed prefixes: block hash -> None, least recently used first."""

    def __init__(self, capacity_blocks: int) -> None:
        self.blocks: OrderedDict[int, None] = OrderedDict()
        self.capacity = max(1, capacity_blocks)

    def match(self, hashes: list[int]) -> int:
        n = 0
        while n < len(hashes) and hashes[n] in self.blocks:
            n += 1
        return n

    def insert(self, hashes: list[int]) -> None:
        for h in hashes:
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)


class PrefixRouter:
    """Thread-safe: `choose` a replica for a prompt (counts it in flight there), `done` when it ends."""

    def __init__(self, replicas: int, policy: str = "cache_aware", capacity_blocks: int = 1 << 16,
                 cache_threshold: float = 0.5, balance_abs: int = 32, balance_rel: float = 1.5) -> None:
        if policy not in POLICIES:
            raise ValueError(f"load_balance_method={policy!r}: use one of {', '.join(POLICIES)}")
        if replicas < 1:
            raise ValueError(f"dp_size={replicas}: must be at least 1")
        self.policy, self.cache_threshold = policy, cache_threshold
        self.balance_abs, self.balance_rel = balance_abs, balance_rel
        self.trees = [_Tree(capacity_blocks) for _ in range(replicas)]
        self.loads = [0] * replicas  # requests in flight per replica
        self._next = 0
        self._lock = threading.Lock()

    def choose(self, key: str | Sequence[int] | None) -> int:
        with self._lock:
            i = self._pick(key)
            self.loads[i] += 1
            return i

    def done(self, i: int) -> None:
        with self._lock:
            self.loads[i] -= 1

    def _least_loaded(self) -> int:
        return min(range(len(self.loads)), key=lambda i: (self.loads[i], i))

    def _pick(self, key: str | Sequence[int] | None) -> int:
        if self.policy == "round_robin":
            self._next = (i := self._next) + 1
            return i % len(self.loads)
        if self.policy == "shortest_queue" or key is None:
            return self._least_loaded()
        hashes = block_hashes(key)
        lo, hi = min(self.loads), max(self.loads)
        if hi - lo > self.balance_abs and hi > self.balance_rel * lo:
            i = self._least_loaded()
        else:
            matched = [t.match(hashes) for t in self.trees]
            best = max(range(len(matched)), key=lambda j: (matched[j], -self.loads[j], -j))
            if hashes and matched[best] >= self.cache_threshold * len(hashes):
                i = best
            else:  # a new prefix: to the replica caching least
                i = min(range(len(self.trees)), key=lambda j: (len(self.trees[j].blocks), self.loads[j], j))
        self.trees[i].insert(hashes)
        return i
