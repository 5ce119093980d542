"""The runner's media step: each scheduled request's media spans become input embeddings
(rows of the item's encoder output, from the cache or one encoder call per step)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..forward_batch import InputEmbeds, ScheduledBatch
from .encoder_cache import EncoderCache


def embed_media(sched: ScheduledBatch, model: Any, cache: EncoderCache) -> ScheduledBatch:
    """`sched` with every media span written into its request's `embeds` (spans cleared)."""
    spans = [s for r in sched.reqs for s in r.media]
    if not spans:
        return sched
    items = list({id(s.item): s.item for s in spans}.values())
    rows = dict(zip([id(it) for it in items], cache.get(items, model.encode_media)))
    reqs = []
    for r in sched.reqs:
        if not r.media:
            reqs.append(r)
            continue
        offsets = [torch.arange(s.at, s.at + s.hi - s.lo) for s in r.media]
        parts = [rows[id(s.item)][s.lo : s.hi] for s in r.media]
        if r.embeds is not None:
            offsets.append(r.embeds.offsets)
            parts.append(r.embeds.rows.to(parts[0].dtype))
        reqs.append(dataclasses.replace(r, embeds=InputEmbeds(torch.cat(offsets), torch.cat(parts)), media=()))
    return dataclasses.replace(sched, reqs=reqs)
