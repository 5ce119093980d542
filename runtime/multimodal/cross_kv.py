"""The runner's cross-attention step (Mllama): each scheduled request that cross-attends gets
its images' keys and values, per image content hash from the runner's cross-KV cache, or from
one `model.encode_cross` call per step for the images no cache entry holds.

NOTE (computed once per image): the keys and values of an image (every cross layer's k/v
projections of its projected vision states) depend only on its pixels, so every request and
fork that shows the same image shares one cache entry; `runs` counts the images computed."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..forward_batch import ScheduledBatch
from .encoder_cache import EncoderCache


def attach_cross_kv(sched: ScheduledBatch, model: Any, cache: EncoderCache) -> ScheduledBatch:
    """`sched` with `cross_kv` filled for every request that has `cross_groups`."""
    items = list({it.hash: it for r in sched.reqs if r.cross_groups is not None for it in r.cross_items}.values())
    if not items:
        return sched
    kv = dict(zip([it.hash for it in items], cache.get(items, model.encode_cross, rows_are_tokens=False)))
    reqs = [dataclasses.replace(r, cross_kv=tuple(kv[it.hash] for it in r.cross_items))
            if r.cross_groups is not None else r for r in sched.reqs]
    return dataclasses.replace(sched, reqs=reqs)
