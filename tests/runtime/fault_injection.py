"""Fault injection for the engine: makes the forward, the sampler, the grammar mask and result
building raise at random calls, and a mixed workload to run under it."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sgl.runtime.engine as engine_module
import sgl.runtime.scheduler.scheduler as scheduler_module

SITES = ("forward", "sample", "grammar_mask", "build_result")
REGEX = r"(yes|no)[0-9]{2,4}"


class InjectedFault(RuntimeError):
    pass


class FaultInjector:
    """Wraps the engine's step functions; each call raises with probability `rate` (seeded)."""

    def __init__(self, engine: Any, rate: float, seed: int = 0) -> None:
        self.engine, self.rate = engine, rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.raised = dict.fromkeys(SITES, 0)
        self.calls = dict.fromkeys(SITES, 0)

    def _wrap(self, site: str, fn: Any) -> Any:
        def faulty(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.calls[site] += 1
                # NOTE: every site fires at least once (at its third call) whatever the draws
                fire = self.rng.random() < self.rate or (self.calls[site] == 3 and not self.raised[site])
                if fire:
                    self.raised[site] += 1
            if fire:
                raise InjectedFault(f"injected fault in {site}")
            return fn(*args, **kwargs)

        return faulty

    @contextmanager
    def active(self) -> Iterator[FaultInjector]:
        runner = self.engine._scheduler.runner
        saved = (runner.forward, scheduler_module.sample, scheduler_module.apply_grammar_masks,
                 engine_module.build_result)
        runner.forward = self._wrap("forward", saved[0])
        scheduler_module.sample = self._wrap("sample", saved[1])
        scheduler_module.apply_grammar_masks = self._wrap("grammar_mask", saved[2])
        engine_module.build_result = self._wrap("build_result", saved[3])
        try:
            yield self
        finally:
            del runner.forward  # back to the class's method
            scheduler_module.sample, scheduler_module.apply_grammar_masks, engine_module.build_result = saved[1:]


KINDS = ("plain", "stream", "prefill_only", "n2", "constrained", "logprobs", "chunked")


def workload(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """n (kind, engine.generate kwargs), cycling through KINDS; prompts as token ids."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        length = rng.randrange(150, 260) if kind == "chunked" else rng.randrange(6, 30)
        ids = [rng.randrange(3, 40000) for _ in range(length)]
        sp: dict[str, Any] = {"max_new_tokens": rng.randrange(4, 12), "temperature": 0, "ignore_eos": True}
        kwargs: dict[str, Any] = {"input_ids": ids, "sampling_params": sp}
        if kind == "stream":
            kwargs["stream"] = True
        elif kind == "prefill_only":
            sp["max_new_tokens"] = 0
        elif kind == "n2":
            sp.update(n=2, temperature=0.8, seed=i)
        elif kind == "constrained":
            sp["regex"] = REGEX
        elif kind == "logprobs":
            kwargs.update(return_logprob=True, top_logprobs_num=2, logprob_start_len=0)
        out.append((kind, kwargs))
    return out


def run_one(engine: Any, kwargs: dict[str, Any]) -> list[dict]:
    """The request's final result(s), as a list."""
    if kwargs.get("stream"):
        last = None
        for chunk in engine.generate(**kwargs):
            last = chunk
        return [last]
    out = engine.generate(**kwargs)
    return out if isinstance(out, list) else [out]


def check_result(kind: str, result: dict) -> str:
    """'ok' or 'failed'; asserts a failure names the injected error and a success is whole."""
    reason = result["meta_info"]["finish_reason"]
    assert reason is not None, result
    if reason["type"] == "abort":
        assert "InjectedFault" in reason["message"] and "injected fault in" in reason["message"], reason
        assert reason.get("status_code") == 500, reason
        return "failed"
    assert reason["type"] in ("stop", "length"), reason
    if kind == "prefill_only":
        assert result["output_ids"] == [], result
    elif kind != "constrained":
        assert len(result["output_ids"]) >= 4, result
    if kind == "logprobs":
        assert len(result["meta_info"]["output_token_logprobs"]) == len(result["output_ids"])
    return "ok"
