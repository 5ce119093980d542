"""The runner's cross-attention step (Mllama): each scheduled request that cross-attends gets
its images' keys and values: the ones its items already hold, else per image content hash from
the runner's cross-KV cache, else from one `model.encode_cross` call per step.

NOTE (computed once per image): the keys and values of an image (every cross layer's k/v
projections of its projected vision states) depend only on its pixels, so every request and
fork that shows the same image shares one cache entry; `runs` counts the images computed.
A request's items keep theirs while it lives (as its KV slots are kept): a real image's KV is
hundreds of MB (Llama 3.2 11B: 4 tiles x 1601 rows x 8 layers x 2 x 1024 values), so a cache
smaller than the running images would otherwise recompute them at every decode step."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..forward_batch import ScheduledBatch
from .encoder_cache import EncoderCache


def attach_cross_kv(sched: ScheduledBatch, model: Any, cache: EncoderCache) -> ScheduledBatch:
    """`sched` with `cross_kv` filled for every request that has `cross_groups`."""
    cross = [r for r in sched.reqs if r.cross_groups is not None]
    if not cross:
        return sched
    need = [it for r in cross for it in r.cross_items if it.cross_kv is None]
    if need:
        unique = list({it.hash: it for it in need}.values())
        kv = dict(zip([it.hash for it in unique], cache.get(unique, model.encode_cross, rows_are_tokens=False)))
        for it in need:
            it.cross_kv = kv[it.hash]
    reqs = [dataclasses.replace(r, cross_kv=tuple(it.cross_kv for it in r.cross_items))
            if r.cross_groups is not None else r for r in sched.reqs]
    return dataclasses.replace(sched, reqs=reqs)
