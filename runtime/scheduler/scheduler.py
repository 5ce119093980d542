"""Scheduler: continuous batching over the radix cache.

One step = schedule -> forward -> sample -> postprocess. Prefill goes first: while requests
wait and fit, a prefill (extend) batch runs; otherwise every running request decodes one token.

NOTE (no lost request): every request added is in `requests` until its final result was
handed over. A request is always in one queue (waiting, chunked, running, jumped) except while
a step holds it; when a step raises, `fail_step` ends the requests it touched and any that left
every queue, frees their KV, and the others keep going.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import EngineConfig
from ..constrained.mask import apply_grammar_masks
from ..forward_batch import ForwardMode, ScheduledBatch, ScheduledReq
from ..model_runner import ModelRunner
from ..sampling.sampler import sample
from .extend_plan import ExtendPlan, decode_cross, extend_batch, shared_with_batch
from .jump_forward import try_jump_forward
from .kv_manager import KVManager
from .policy import order_waiting
from .postprocess import (
    append_token,
    finish_abort,
    finish_error,
    finish_prefill_only,
    record_input_logprobs,
    record_output_logprob,
)
from .request import Req

RESERVE_CLIP = 4096  # no request reserves room for more than this many future tokens
IN_BATCH_SHARE_MIN = 32  # defer a request that shares this many uncached tokens with the batch
# an encoder's batches (whole prompts, bidirectional): fewer tokens than a generator's prefill. On
# all-MiniLM-L6-v2 in float32, 2,000 sentences in batches of 3-4K tokens ran 8-12% faster than in
# 16K (several runs side by side): a 16K-token batch's float32 activations are ~100 MB a product,
# far past the caches, and each is fresh memory (glibc maps allocations over 32 MB anew)
ENCODER_BATCH_TOKENS = 4096
INIT_NEW_TOKEN_RATIO, MIN_NEW_TOKEN_RATIO, NEW_TOKEN_RATIO_DECAY = 0.7, 0.1, 0.001


class Scheduler:
    def __init__(self, cfg: EngineConfig, kv: KVManager, runner: ModelRunner, context_length: int,
                 on_update: Callable[[Req], None], generator: torch.Generator) -> None:
        self.cfg, self.kv, self.runner = cfg, kv, runner
        self.context_length = context_length
        # tokens of one prefill batch (the prompt that crosses it still joins)
        self.prefill_budget = min(cfg.max_prefill_tokens, ENCODER_BATCH_TOKENS) if runner.pools_all_tokens \
            else cfg.max_prefill_tokens
        self.on_update = on_update  # called with a request after each change a caller can see
        self.generator = generator
        self.requests: dict[int, Req] = {}  # id -> every request added whose end was not handed over
        self.touched: list[Req] = []  # the requests the current step took out of their queues
        self.waiting: list[Req] = []
        self.running: list[Req] = []
        self.chunked: Req | None = None  # a request in the middle of a chunked prefill
        self.jumped: list[Req] = []  # running requests whose jump-forward text needs an extend step
        self.new_token_ratio = INIT_NEW_TOKEN_RATIO
        self.stats = {"prefill_tokens": 0, "decode_tokens": 0, "retractions": 0, "steps": 0}

    # ---- the step ------------------------------------------------------------------------
    def step(self) -> bool:
        """Runs one forward if there is work; returns False when idle. On an exception, call
        `fail_step` before the next step."""
        self.touched = []
        plans = self.schedule_extend()
        if plans:
            self.run_extend(plans)
            return True
        if self.running:
            self.run_decode()
            return True
        return bool(self.waiting)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.chunked or self.jumped)

    def queued(self) -> list[Req]:
        """Every request in a queue (the union of the four)."""
        return self.waiting + self.live_requests()

    def _emit(self, r: Req) -> None:
        """Hands a change to the caller; a finished request leaves the scheduler."""
        self.on_update(r)
        if r.finished:
            self.requests.pop(id(r), None)

    # ---- prefill -------------------------------------------------------------------------
    def _reserve(self, r: Req) -> float:
        left = r.sampling.max_new_tokens - len(r.output_ids)
        return min(max(left, 0), RESERVE_CLIP) * self.new_token_ratio

    def _prefix_limit(self, r: Req) -> int:
        """How much of fill_ids may come from the cache: at least one token must be computed to
        get next-token logits, and input logprobs need their positions recomputed."""
        n = len(r.fill_ids)
        if r.pool:  # the pooled tokens are computed: the last one, or all of them (runner.pools_all_tokens)
            return 0 if self.runner.pools_all_tokens else n - 1
        limit = n if r.sampling.max_new_tokens == 0 and not r.output_ids else n - 1
        if r.logprob is not None and not r.logprob.input_values:
            limit = min(limit, r.logprob.start)
        return max(limit, 0)

    def _match(self, r: Req) -> tuple[torch.Tensor, object]:
        """The cached prefix of r; one that ends inside a non-causal span stops at its start."""
        prefix, node = self.kv.match(r, self._prefix_limit(r))
        if r.media is not None and r.media.prefix_cut(len(prefix)) < len(prefix):
            prefix, node = self.kv.match(r, r.media.prefix_cut(len(prefix)))
        return prefix, node

    @staticmethod
    def _chunk(r: Req, start: int, take: int) -> int:
        """take, moved so that the chunk from `start` does not cut a non-causal span."""
        if r.media is None or not r.media.noncausal:
            return take
        return r.media.chunk_end(start, start + take) - start

    def schedule_extend(self) -> list[ExtendPlan]:
        if not self.waiting and self.chunked is None and not self.jumped:
            return []
        token_budget = self.prefill_budget
        chunk_cap = self.cfg.chunked_prefill_size if self.cfg.chunked_prefill_size > 0 else 1 << 62
        room = self.kv.available() - sum(self._reserve(r) for r in self.running)
        plans: list[ExtendPlan] = []

        self.touched += self.jumped
        for r in self.jumped:  # already admitted: compute the jumped-forward tokens
            take = len(r.fill_ids) - r.kv_len
            if self.kv.extend(r, take) is None:  # out of memory: retract it like a decode would
                self.kv.release(r, keep=False)
                self.waiting.insert(0, r)
                continue
            plans.append(ExtendPlan(r, r.kv_len, take, jumped=True))
        self.jumped = []
        if plans:  # NOTE: alone, so the forward is rowwise: each jumped token gets the values a
            return plans  # decode step would give it (greedy output is the same without jumping)

        if self.chunked is not None:  # a chunked prefill continues before anything new
            r = self.chunked
            self.touched.append(r)
            take = self._chunk(r, r.kv_len, min(len(r.fill_ids) - r.kv_len, chunk_cap, token_budget))
            if self.kv.extend(r, take) is None:
                return []
            plans.append(ExtendPlan(r, r.kv_len, take))
            token_budget -= take
            room -= take
            self.chunked = None if r.kv_len + take == len(r.fill_ids) else r
            if self.chunked is not None:
                return plans

        batch_keys: list[list[int]] = []
        admitted: list[Req] = []
        for r in order_waiting(self.waiting, self.cfg.schedule_policy, self.kv.tree):
            if len(self.running) + len(plans) >= self.cfg.max_running_requests or token_budget <= 0:
                break
            prefix, node = self._match(r)
            extend = len(r.fill_ids) - len(prefix)
            if extend == 0:  # a prefill-only request whose prompt is fully cached
                r.cached_tokens = len(prefix)
                finish_prefill_only(r)
                admitted.append(r)
                self.touched.append(r)
                self._emit(r)
                continue
            if shared_with_batch(r.fill_ids, len(prefix), batch_keys) >= IN_BATCH_SHARE_MIN:
                continue  # another request in this batch computes the same tokens; reuse them next round
            alone = not plans and not self.running
            if extend + self._reserve(r) > room and not alone:
                break
            take = self._chunk(r, len(prefix), min(extend, chunk_cap, token_budget))
            if r.pool and self.runner.pools_all_tokens:
                take = extend  # NOTE: a pooler that reads every token needs them in one forward
            if alone:
                take = self._chunk(r, len(prefix), min(take, self.kv.available()))
            if take <= 0 or not self.kv.admit(r, prefix, node):
                break
            self.touched.append(r)  # holds a row now: a failure from here on must release it
            if self.kv.extend(r, take) is None:
                self.kv.release(r, keep=False)
                break
            if not r.admitted:
                r.cached_tokens, r.admitted = len(prefix), True
            plans.append(ExtendPlan(r, r.kv_len, take))
            admitted.append(r)
            batch_keys.append(r.fill_ids)
            token_budget -= take
            room -= take + self._reserve(r)
            if take < extend:
                self.chunked = r
                break
        if admitted:
            gone = set(map(id, admitted))
            self.waiting = [r for r in self.waiting if id(r) not in gone]
        return plans

    def run_extend(self, plans: list[ExtendPlan]) -> None:
        batch = extend_batch(plans, self.kv.table)
        out = self.runner.forward(batch)
        logits = out.logits
        for i, b in enumerate(batch.pool_reqs):
            plans[b].req.embedding = out.pooled[i]  # type: ignore[index]
        self.stats["prefill_tokens"] += sum(p.length for p in plans)
        self.stats["steps"] += 1

        samplers: list[tuple[Req, int]] = []
        for plan in plans:
            r = plan.req
            self.kv.computed(r)
            if r.logprob is not None and not r.output_ids and (plan.input_logprob_rows or plan.start <= r.logprob.start):
                record_input_logprobs(r, logits[plan.input_logprob_rows], plan.input_logprob_first)
            if r.kv_len < len(r.fill_ids):
                continue  # mid-chunk
            if not r.output_ids and not (r.pool and self.runner.pools_all_tokens):
                self.kv.cache(r)  # share the prompt with later requests while this one runs
            if plan.sample_row is None:
                finish_prefill_only(r)
                self.kv.release(r, keep=not (r.pool and self.runner.pools_all_tokens))
                self._emit(r)
            else:
                samplers.append((r, plan.sample_row))
        if samplers:
            rows = [i for _, i in samplers]
            self.running.extend(self._sample_and_append([r for r, _ in samplers], logits[rows]))

    # ---- decode --------------------------------------------------------------------------
    def run_decode(self) -> None:
        self._make_decode_room()
        if not self.running:
            return
        reqs = self.running
        self.touched += reqs
        slots = self.kv.extend_decode(reqs)
        assert slots is not None  # _make_decode_room guaranteed it
        batch = [ScheduledReq(r.row, r.kv_len, [r.output_ids[-1]], slots[i : i + 1],  # type: ignore[arg-type]
                              mrope_positions=None if r.media is None else r.media.positions(r.kv_len, r.kv_len + 1),
                              **decode_cross(r))
                 for i, r in enumerate(reqs)]
        logits = self.runner.forward(ScheduledBatch(ForwardMode.DECODE, batch, list(range(len(reqs))))).logits
        for r in reqs:
            self.kv.computed(r)
        self.stats["decode_tokens"] += len(reqs)
        self.stats["steps"] += 1
        self.new_token_ratio = max(MIN_NEW_TOKEN_RATIO, self.new_token_ratio - NEW_TOKEN_RATIO_DECAY)
        self.running = self._sample_and_append(reqs, logits)

    def _make_decode_room(self) -> None:
        """Retracts requests until every running request can get one more slot."""
        while self.running and self.kv.available() < len(self.running):
            if len(self.running) == 1:
                r = self.running.pop()
                finish_abort(r, "out of KV cache memory: raise max_total_tokens or lower max_new_tokens")
                self.kv.release(r, keep=False)
                self._emit(r)
                return
            # retract the request that loses least work: fewest outputs, then longest prompt
            victim = min(self.running, key=lambda r: (len(r.output_ids), -len(r.input_ids)))
            self.running.remove(victim)
            self.kv.release(victim, keep=False)
            victim.retractions += 1
            self.waiting.insert(0, victim)
            self.stats["retractions"] += 1
            self.new_token_ratio = INIT_NEW_TOKEN_RATIO

    # ---- sampling and results ------------------------------------------------------------
    def _sample_and_append(self, reqs: list[Req], logits: torch.Tensor) -> list[Req]:
        """Samples one token per request and applies it. Returns the requests that keep
        decoding; finished ones are released, jumped-forward ones wait for an extend step."""
        for r in reqs:
            p = r.sampling
            banned = list(p.stop_token_ids) + list(r.eos_ids) if len(r.output_ids) < p.min_new_tokens else []
            r.banned_ids = banned
        if any(r.grammar is not None for r in reqs):
            apply_grammar_masks([r.grammar for r in reqs], logits)
        want_logprobs = [i for i, r in enumerate(reqs) if r.logprob is not None]
        logprobs = torch.log_softmax(logits[want_logprobs], dim=-1) if want_logprobs else None
        next_ids = sample(logits, reqs, self.generator).tolist()
        for j, i in enumerate(want_logprobs):
            record_output_logprob(reqs[i], logprobs[j], next_ids[i])  # type: ignore[index]
        continuing = []
        jump = not self.cfg.disable_jump_forward
        for r, token in zip(reqs, next_ids):
            append_token(r, token, self.context_length)
            jumped = jump and not r.finished and try_jump_forward(r, self.context_length)
            if r.finished:
                self.kv.release(r)
                self._emit(r)
                continue
            if jumped:
                self.jumped.append(r)
            else:
                continuing.append(r)
            if r.stream:
                self.on_update(r)
        return continuing

    # ---- control -------------------------------------------------------------------------
    def add(self, r: Req) -> None:
        self.requests[id(r)] = r
        self.waiting.append(r)

    def fail_step(self, message: str) -> list[Req]:
        """After a step raised: ends every request it touched, and any that left every queue,
        with an abort naming `message`, and frees their KV. Returns them (their final result
        is the caller's to deliver: on_update may be what failed)."""
        queued = set(map(id, self.queued()))
        touched = set(map(id, self.touched))
        victims = [r for r in self.requests.values() if id(r) in touched or id(r) not in queued]
        # NOTE: a request the step finished and answered may still sit in the queue it was
        # taken from (running, waiting): it leaves with the victims
        done = [r for r in self.touched if r.finished and id(r) not in self.requests]
        self.touched = []
        self._remove(victims + done)
        for r in victims:
            finish_error(r, message)
            self.kv.release(r, keep=False)
            self.requests.pop(id(r), None)
        return victims

    def fail_all(self, message: str) -> list[Req]:
        """Ends every request (the engine is stopping or broken); returns them, as fail_step."""
        victims = list(self.requests.values())
        self.waiting, self.running, self.jumped, self.chunked, self.requests = [], [], [], None, {}
        for r in victims:
            finish_error(r, message)
            self.kv.release(r, keep=False)
        return victims

    def lost(self) -> list[Req]:
        """Requests added and not finished that are in no queue (checked while idle: none
        should be; a bug otherwise, which `fail_step` turns into an error for them)."""
        queued = set(map(id, self.queued()))
        return [r for r in self.requests.values() if id(r) not in queued]

    def flush(self) -> bool:
        """Empties the radix cache and the runner's encoder-output and cross-KV caches; refused
        (False) while requests are queued or running."""
        if self.has_work():
            return False
        self.kv.tree.reset()
        self.kv.allocator.reset()
        self.runner.encoder_cache.clear()
        self.runner.cross_kv_cache.clear()
        return True

    def _remove(self, reqs: list[Req]) -> None:
        gone = set(map(id, reqs))
        self.waiting = [r for r in self.waiting if id(r) not in gone]
        self.running = [r for r in self.running if id(r) not in gone]
        self.jumped = [r for r in self.jumped if id(r) not in gone]
        if self.chunked is not None and id(self.chunked) in gone:
            self.chunked = None

    def abort(self, rid: str) -> bool:
        for queue in (self.waiting, self.running, self.jumped):
            for r in queue:
                if r.rid == rid:
                    queue.remove(r)
                    self._abort(r)
                    return True
        if self.chunked is not None and self.chunked.rid == rid:
            r, self.chunked = self.chunked, None
            self._abort(r)
            return True
        return False

    def _abort(self, r: Req) -> None:
        finish_abort(r, "aborted by request")
        self.kv.release(r, keep=False)
        self._emit(r)

    def live_requests(self) -> list[Req]:
        live = self.running + self.jumped
        if self.chunked is not None:
            live.append(self.chunked)
        return live
