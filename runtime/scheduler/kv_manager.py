"""KV bookkeeping for requests: admission with a cached prefix, slot allocation with eviction,
caching a request's tokens in the radix tree, release, retraction, and the global slot check.

Every slot 1..num_slots is at any time in exactly one place: the allocator's free list, the
radix tree, or the owned range [tree_len, kv_len) of one live request (see request.py).
"""

from __future__ import annotations

import torch

from ..cache import RadixCache, ReqToTokenTable, SlotAllocator
from .request import Req


class KVManager:
    def __init__(self, allocator: SlotAllocator, table: ReqToTokenTable, tree: RadixCache) -> None:
        self.allocator, self.table, self.tree = allocator, table, tree

    def available(self) -> int:
        """Slots obtainable now: free plus evictable."""
        return self.allocator.available() + self.tree.evictable_size()

    def alloc(self, n: int) -> torch.Tensor | None:
        """n slots, evicting unlocked cache entries if needed; None if even that is not enough."""
        slots = self.allocator.alloc(n)
        if slots is None:
            self.tree.evict(n - self.allocator.available())
            slots = self.allocator.alloc(n)
        return slots

    def match(self, req: Req, limit: int) -> tuple[torch.Tensor, object]:
        return self.tree.match_prefix(req.fill_ids[:limit])

    def admit(self, req: Req, prefix: torch.Tensor, node: object) -> bool:
        """Gives `req` a table row and the cached prefix (locked). False if no row is free."""
        row = self.table.alloc()
        if row is None:
            return False
        req.row, req.node = row, node  # type: ignore[assignment]
        self.tree.lock(node)  # type: ignore[arg-type]
        req.tree_len = req.kv_len = req.alloc_len = len(prefix)
        self.table.write(row, 0, prefix)
        return True

    def extend(self, req: Req, n: int) -> torch.Tensor | None:
        """Allocates slots for the next n tokens of `req` (positions kv_len..kv_len+n-1) and
        records them in its row (alloc_len). The caller advances kv_len after the forward."""
        assert req.alloc_len == req.kv_len, "a request's previous allocation was not computed"
        slots = self.alloc(n)
        if slots is not None:
            self.table.write(req.row, req.kv_len, slots)  # type: ignore[arg-type]
            req.alloc_len = req.kv_len + n
        return slots

    def extend_decode(self, reqs: list[Req]) -> torch.Tensor | None:
        """One slot for the next token of each request (a decode step); None if none left."""
        slots = self.alloc(len(reqs))
        if slots is not None:
            for r, s in zip(reqs, slots.tolist()):
                assert r.alloc_len == r.kv_len, "a request's previous allocation was not computed"
                self.table.table[r.row, r.kv_len] = s
                r.alloc_len = r.kv_len + 1
        return slots

    @staticmethod
    def computed(req: Req) -> None:
        """After a forward: the allocated positions now hold KV."""
        req.kv_len = req.alloc_len

    def cache(self, req: Req) -> None:
        """Moves req's computed tokens into the tree and re-locks the longer path, so requests
        that share them hit the cache while this one keeps running. No-op when the cache is off."""
        if self.tree.disable:
            return
        key = req.fill_ids[: req.kv_len]
        slots = self.table.read(req.row, req.kv_len).clone()  # type: ignore[arg-type]
        already = self.tree.insert(key, slots)
        if already > req.tree_len:  # another request cached these tokens first: ours are duplicates
            self.allocator.free(slots[req.tree_len : already])
        prefix, node = self.tree.match_prefix(key)
        self.table.write(req.row, 0, prefix)  # type: ignore[arg-type]
        self.tree.lock(node)
        self.tree.unlock(req.node)  # type: ignore[arg-type]
        req.node, req.tree_len = node, len(prefix)

    def release(self, req: Req, keep: bool = True) -> None:
        """Frees a finished (keep=True: cached) or aborted/retracted (keep=False) request's KV."""
        if req.row is None:
            return
        if keep:
            self.cache(req)  # afterwards the request owns nothing unless the cache is off
        # NOTE: up to alloc_len: a step that failed after allocating left slots past kv_len
        self.allocator.free(self.table.read(req.row, max(req.kv_len, req.alloc_len))[req.tree_len :].clone())
        self.tree.unlock(req.node)  # type: ignore[arg-type]
        self.table.free(req.row)
        req.row, req.node, req.tree_len, req.kv_len, req.alloc_len = None, None, 0, 0, 0

    def check(self, live: list[Req]) -> None:
        """Asserts that every slot is free, in the tree, or owned by exactly one live request."""
        self.tree.check_integrity()
        owned = [self.table.read(r.row, max(r.kv_len, r.alloc_len))[r.tree_len :] for r in live if r.row is not None]
        parts = [self.allocator.free_slots(), self.tree.all_slots(), *owned]
        everything = torch.cat(parts)
        n = self.allocator.num_slots
        assert len(everything) == n, f"{len(everything)} slots accounted for, pool has {n}"
        assert bool((torch.sort(everything).values == torch.arange(1, n + 1)).all()), "a slot is lost or held twice"
