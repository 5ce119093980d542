"""RadixCache: a per-token prefix tree over token ids whose values are KV slots.

Every edge holds a run of tokens (`key`) and the KV slots that hold them (`value`, same length).
A request matches its prompt against the tree, reuses the slots of the longest cached prefix,
and locks that path while it runs so eviction cannot take it. Finished (or chunked) requests
insert their tokens; unlocked leaves are evicted least-recently-used first.

    root ── [The, cap, ital] ──┬── [of, France] ── ...
                               └── [city] ── ...

NOTE (invariants, checked by `check_integrity`):
- len(node.key) == len(node.value) for every node but the root; children are keyed by the first
  token of their key, and no two children share a first token.
- a node's lock_ref is >= each child's: locking a node locks its whole path to the root.
- evictable_size + protected_size == the number of slots in the tree; each slot appears once.
"""

from __future__ import annotations

import heapq
import itertools
from typing import NamedTuple

import torch

from .allocator import SlotAllocator

_clock = itertools.count()


class TreeNode:
    __slots__ = ("children", "parent", "key", "value", "lock_ref", "last_access")

    def __init__(self, parent: TreeNode | None = None, key: list[int] | None = None,
                 value: torch.Tensor | None = None) -> None:
        self.children: dict[int, TreeNode] = {}
        self.parent = parent
        self.key: list[int] = key or []
        self.value: torch.Tensor = value if value is not None else torch.empty(0, dtype=torch.int64)
        self.lock_ref = 0
        self.last_access = next(_clock)

    def __lt__(self, other: TreeNode) -> bool:  # heap order: least recently used first
        return self.last_access < other.last_access


class MatchResult(NamedTuple):
    slots: torch.Tensor  # (matched_len,) KV slots of the cached prefix
    node: TreeNode  # deepest node of the match; lock it to protect the prefix


def _common_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class RadixCache:
    def __init__(self, allocator: SlotAllocator, disable: bool = False) -> None:
        self.allocator, self.disable = allocator, disable
        self.reset()

    def reset(self) -> None:
        """Drops the whole tree without freeing slots (the caller resets the allocator)."""
        self.root = TreeNode()
        self.root.lock_ref = 1  # the root is never evicted
        self._evictable = 0
        self._protected = 0

    # ---- queries -------------------------------------------------------------------------
    def match_prefix(self, key: list[int]) -> MatchResult:
        """Longest cached prefix of `key`. Splits an edge when the match ends inside it, so the
        returned node covers exactly the matched tokens. Touches the path (LRU)."""
        if self.disable or not key:
            return MatchResult(torch.empty(0, dtype=torch.int64), self.root)
        node, path = self._walk(key)
        slots = torch.cat([n.value for n in path]) if path else torch.empty(0, dtype=torch.int64)
        return MatchResult(slots, node)

    def _walk(self, key: list[int]) -> tuple[TreeNode, list[TreeNode]]:
        """Follows `key` down the tree, splitting the last edge where the match ends inside it.
        Returns the deepest matched node and the matched nodes below the root, touching each."""
        node, pos, path = self.root, 0, []
        while pos < len(key) and key[pos] in node.children:
            child = node.children[key[pos]]
            n = _common_len(child.key, key[pos:])
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access = next(_clock)
            path.append(child)
            node, pos = child, pos + n
        return node, path

    def _split(self, child: TreeNode, n: int) -> TreeNode:
        """Splits `child` after its first n tokens; returns the new upper node."""
        upper = TreeNode(child.parent, child.key[:n], child.value[:n])
        upper.lock_ref = child.lock_ref
        upper.last_access = child.last_access
        child.parent.children[child.key[0]] = upper  # type: ignore[union-attr]
        child.key, child.value, child.parent = child.key[n:], child.value[n:], upper
        upper.children[child.key[0]] = child
        return upper

    # ---- updates -------------------------------------------------------------------------
    def insert(self, key: list[int], slots: torch.Tensor) -> int:
        """Inserts `key` with its `slots`. Returns how many leading tokens were already cached:
        the caller owns those entries of `slots` (duplicates) and must free them. The tree takes
        ownership of the rest. With the cache disabled the tree takes nothing."""
        if self.disable:
            return len(key)
        node, path = self._walk(key)
        pos = sum(len(n.key) for n in path)
        if pos < len(key):
            new = TreeNode(node, key[pos:], slots[pos:].clone())
            node.children[key[pos]] = new
            self._evictable += len(new.key)
        return pos

    def lock(self, node: TreeNode) -> None:
        """Protects the path root..node from eviction (reference counted)."""
        while node is not self.root:
            if node.lock_ref == 0:
                self._evictable -= len(node.key)
                self._protected += len(node.key)
            node.lock_ref += 1
            node = node.parent  # type: ignore[assignment]

    def unlock(self, node: TreeNode) -> None:
        while node is not self.root:
            if node.lock_ref <= 0:
                raise RuntimeError("RadixCache.unlock on a node that is not locked")
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self._evictable += len(node.key)
                self._protected -= len(node.key)
            node = node.parent  # type: ignore[assignment]

    def evict(self, num_tokens: int) -> int:
        """Frees at least `num_tokens` slots from unlocked leaves, least recently used first, as
        far as possible. Returns the number freed."""
        if self.disable or num_tokens <= 0:
            return 0
        heap = [n for n in self._nodes() if not n.children and n.lock_ref == 0 and n is not self.root]
        heapq.heapify(heap)
        freed = 0
        while heap and freed < num_tokens:
            leaf = heapq.heappop(heap)
            self.allocator.free(leaf.value)
            freed += len(leaf.key)
            self._evictable -= len(leaf.key)
            parent = leaf.parent
            del parent.children[leaf.key[0]]  # type: ignore[union-attr]
            if parent is not self.root and not parent.children and parent.lock_ref == 0:  # type: ignore[union-attr]
                heapq.heappush(heap, parent)  # type: ignore[arg-type]
        return freed

    # ---- introspection -------------------------------------------------------------------
    def evictable_size(self) -> int:
        return self._evictable

    def protected_size(self) -> int:
        return self._protected

    def total_size(self) -> int:
        return sum(len(n.key) for n in self._nodes())

    def size_info(self) -> dict[str, int]:
        return {"evictable": self._evictable, "protected": self._protected, "total": self.total_size()}

    def all_slots(self) -> torch.Tensor:
        parts = [n.value for n in self._nodes() if n is not self.root]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)

    def _nodes(self) -> list[TreeNode]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children.values())
        return out

    def check_integrity(self) -> bool:
        """Raises AssertionError naming the broken invariant; returns True otherwise."""
        evictable = protected = 0
        for node in self._nodes():
            if node is self.root:
                continue
            assert len(node.key) == len(node.value) > 0, "edge key and value lengths differ or are empty"
            assert node.parent is not None and node.parent.children.get(node.key[0]) is node, "child keyed wrongly"
            assert node.lock_ref >= 0, "negative lock_ref"
            if node.parent is not self.root:
                assert node.parent.lock_ref >= node.lock_ref, "a locked node has an unlocked parent"
            if node.lock_ref == 0:
                evictable += len(node.key)
            else:
                protected += len(node.key)
        assert evictable == self._evictable, f"evictable size {self._evictable} != {evictable}"
        assert protected == self._protected, f"protected size {self._protected} != {protected}"
        slots = self.all_slots()
        assert len(torch.unique(slots)) == len(slots), "a slot appears twice in the tree"
        assert not bool((slots == 0).any()), "the padding slot 0 is in the tree"
        return True
