"""Orders the waiting queue before a prefill batch is picked.

- fcfs: arrival order.
- lpm: longest cached prefix first, so requests that reuse the cache run while it holds it.
- dfs-weight: walks the radix tree depth first, heaviest subtree (most waiting requests) first,
  so requests that share prefixes run next to each other.
Matching every waiting request costs time; past 128 waiting requests lpm falls back to fcfs.
"""

from __future__ import annotations

from collections import defaultdict

from ..cache.radix_cache import RadixCache, TreeNode
from .request import Req

LPM_QUEUE_LIMIT = 128


def order_waiting(waiting: list[Req], policy: str, tree: RadixCache) -> list[Req]:
    if policy == "fcfs" or tree.disable or len(waiting) <= 1:
        return list(waiting)
    if policy == "lpm":
        if len(waiting) > LPM_QUEUE_LIMIT:
            return list(waiting)
        matched = {id(r): len(tree.match_prefix(r.fill_ids).slots) for r in waiting}
        return sorted(waiting, key=lambda r: -matched[id(r)])  # stable: ties keep arrival order
    return _dfs_weight(waiting, tree)


def _dfs_weight(waiting: list[Req], tree: RadixCache) -> list[Req]:
    at_node: dict[int, list[Req]] = defaultdict(list)
    for r in waiting:
        at_node[id(tree.match_prefix(r.fill_ids).node)].append(r)
    weight: dict[int, int] = {}

    def count(node: TreeNode) -> int:
        w = len(at_node.get(id(node), [])) + sum(count(c) for c in node.children.values())
        weight[id(node)] = w
        return w

    count(tree.root)
    order: list[Req] = []
    stack = [tree.root]
    while stack:
        node = stack.pop()
        order.extend(at_node.get(id(node), []))
        children = sorted(node.children.values(), key=lambda c: weight[id(c)])
        stack.extend(c for c in children if weight[id(c)] > 0)  # heaviest popped first
    return order
