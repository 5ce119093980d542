"""Extend plans: what a prefill step computes for each request, and the batch it makes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cache import ReqToTokenTable
from ..forward_batch import ForwardMode, InputEmbeds, ScheduledBatch, ScheduledReq
from .request import Req


@dataclass
class ExtendPlan:
    req: Req
    start: int  # first position computed (== kv_len before the forward)
    length: int  # tokens computed this forward
    input_logprob_first: int = 0  # first position whose logits feed input logprobs
    input_logprob_rows: list[int] = field(default_factory=list)  # indices into logits
    sample_row: int | None = None  # index into logits of the next-token row
    jumped: bool = False  # jump-forward tokens of a running request (computed rowwise)


def extend_batch(plans: list[ExtendPlan], table: ReqToTokenTable) -> ScheduledBatch:
    """The batch of an extend step; fills each plan's logit rows (input logprobs, the sampled
    token) as indices into the batch's packed tokens."""
    reqs: list[ScheduledReq] = []
    logit_rows: list[int] = []
    pool_reqs: list[int] = []
    offset = 0
    for plan in plans:
        r = plan.req
        fill = r.fill_ids
        end = plan.start + plan.length
        reqs.append(ScheduledReq(r.row, plan.start, fill[plan.start : end],  # type: ignore[arg-type]
                                 table.read(r.row, end)[plan.start :],  # type: ignore[arg-type]
                                 _embeds_between(r.input_embeds, plan.start, end),
                                 r.media.spans(plan.start, end) if r.media is not None else (),
                                 r.media.positions(plan.start, end) if r.media is not None else None,
                                 None if r.token_type_ids is None else r.token_type_ids[plan.start : end],
                                 r.media.attend_spans(plan.start, end) if r.media is not None else None,
                                 *_cross(r, plan.start, end)))
        if r.pool and end == len(fill):
            pool_reqs.append(len(reqs) - 1)
        if r.logprob is not None and not r.output_ids:
            lo = max(r.logprob.start, plan.start)
            hi = min(len(r.input_ids) - 2, plan.start + plan.length - 1)
            plan.input_logprob_first = lo
            for pos in range(lo, hi + 1):
                plan.input_logprob_rows.append(len(logit_rows))
                logit_rows.append(offset + pos - plan.start)
        completes = plan.start + plan.length == len(fill)
        if completes and not (r.sampling.max_new_tokens == 0 and not r.output_ids):
            plan.sample_row = len(logit_rows)
            logit_rows.append(offset + plan.length - 1)
        offset += plan.length
    return ScheduledBatch(ForwardMode.EXTEND, reqs, logit_rows, pool_reqs, rowwise=all(p.jumped for p in plans))


def _cross(r: Req, start: int, end: int) -> tuple:
    """(cross_items, cross_groups) of positions [start, end): a cross-attention model's images
    (Mllama) and the ones each token attends; ((), None) for any other request."""
    groups = r.media.cross_groups(start, end) if r.media is not None else None
    return (tuple(r.media.items), groups) if groups is not None else ((), None)  # type: ignore[union-attr]


def decode_cross(r: Req) -> dict:
    """A decode step's cross-attention fields (ScheduledReq keywords) of request r."""
    items, groups = _cross(r, r.kv_len, r.kv_len + 1)
    return {"cross_items": items, "cross_groups": groups} if groups is not None else {}


def _embeds_between(embeds: InputEmbeds | None, start: int, end: int) -> InputEmbeds | None:
    """The given embeddings of positions [start, end), offsets counted from start (a chunk
    embeds only the part it computes)."""
    if embeds is None:
        return None
    keep = (embeds.offsets >= start) & (embeds.offsets < end)
    if not bool(keep.any()):
        return None
    return InputEmbeds(embeds.offsets[keep] - start, embeds.rows[keep])


def shared_with_batch(fill: list[int], cached: int, batch_keys: list[list[int]]) -> int:
    """How many of fill's uncached tokens (from `cached` on) another batch member also computes."""
    best = 0
    for key in batch_keys:
        if key[:cached] != fill[:cached]:
            continue
        lo, hi = cached, min(len(key), len(fill))  # binary search on C-level slice equality
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if key[cached:mid] == fill[cached:mid]:
                lo = mid
            else:
                hi = mid - 1
        best = max(best, lo - cached)
    return best
