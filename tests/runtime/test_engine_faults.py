"""No lost request: whatever raises inside a step, every caller gets an answer within a
deadline, the failed requests say why, no KV slot leaks, and the engine keeps serving."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from fault_injection import REGEX, SITES, FaultInjector, check_result, run_one, workload
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine

DEADLINE_S = 180  # every caller must have its answer by then (the run takes ~20 s here)
PROBE = {"input_ids": [5, 17, 923, 4021, 77, 310], "sampling_params": {"max_new_tokens": 12, "temperature": 0,
                                                                      "ignore_eos": True}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path_factory.mktemp("tiny")),
                                default_tokenizer_folder)


def engine_args() -> dict:
    # a small pool and short chunks: retraction and chunked prefill happen under the faults too
    return {"dtype": "float32", "max_total_tokens": 3000, "chunked_prefill_size": 64}


def test_200_mixed_requests_under_random_faults(folder):
    with Engine(folder, **engine_args()) as fresh:
        expected = fresh.generate(**PROBE)["output_ids"]
    with Engine(folder, **engine_args()) as engine:
        jobs = workload(200, seed=3)
        pool = ThreadPoolExecutor(64)  # NOTE: not `with`: its exit would wait for hung callers
        try:
            with FaultInjector(engine, rate=0.06, seed=1).active() as faults:
                futures = [pool.submit(run_one, engine, kwargs) for _, kwargs in jobs]
                done, pending = wait(futures, timeout=DEADLINE_S)
                assert not pending, f"{len(pending)} callers still waiting after {DEADLINE_S} s"
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        outcomes = {"ok": 0, "failed": 0}
        for (kind, _), fut in zip(jobs, futures):
            results = fut.result()
            assert len(results) == (2 if kind == "n2" else 1)
            for r in results:
                outcome = check_result(kind, r)
                outcomes[outcome] += 1
                if outcome == "ok" and kind == "constrained":
                    assert re.fullmatch(REGEX, r["text"]), r["text"]
        assert all(faults.raised[s] > 0 for s in SITES), faults.raised  # every site failed some step
        assert outcomes["ok"] > 0 and outcomes["failed"] > 0, outcomes
        engine.check_kv()
        info = engine.get_server_info()
        assert info["held_slots"] == 0 and info["num_running_reqs"] == 0 and info["num_waiting_reqs"] == 0
        assert engine.generate(**PROBE)["output_ids"] == expected  # serves as a fresh engine does


def test_failed_step_spares_the_requests_it_did_not_touch(folder):
    """A fault in one prefill fails that batch only: a request decoding meanwhile finishes."""
    with Engine(folder, **engine_args()) as engine:
        long = {"input_ids": list(range(100, 120)), "sampling_params": {"max_new_tokens": 200, "temperature": 0,
                                                                        "ignore_eos": True}}
        stream = engine.generate(**long, stream=True)
        first = next(stream)  # decoding now
        assert first["meta_info"]["finish_reason"] is None
        runner = engine._scheduler.runner
        real = runner.forward

        def fail_extends(sched):
            if sched.mode.value == "extend":
                raise RuntimeError("extend broke")
            return real(sched)

        runner.forward = fail_extends
        try:
            bad = engine.generate(input_ids=[7, 8, 9, 10], sampling_params={"max_new_tokens": 4})
        finally:
            del runner.forward
        assert bad["meta_info"]["finish_reason"]["type"] == "abort"
        assert "RuntimeError: extend broke" in bad["meta_info"]["finish_reason"]["message"]
        *_, last = stream
        assert last["meta_info"]["finish_reason"]["type"] == "length"
        assert len(last["output_ids"]) == 200
        engine.check_kv()


def test_dead_scheduler_thread_answers_every_caller(folder):
    """If the loop itself dies, waiting callers get the error, new calls raise at once."""
    engine = Engine(folder, **engine_args())
    try:
        gate = threading.Event()
        real_step = engine._scheduler.step

        def step_then_die():
            if engine._scheduler.waiting:
                gate.wait(10)
                raise SystemExit("scheduler killed")  # not an Exception: the loop does not catch it
            return real_step()

        engine._scheduler.step = step_then_die
        pool = ThreadPoolExecutor(4)
        try:
            futures = [pool.submit(engine.generate, input_ids=[5, 6, 7], sampling_params={"max_new_tokens": 3})
                       for _ in range(3)]
            streamed = pool.submit(lambda: list(engine.generate(input_ids=[9, 9], stream=True)))
            while len(engine._unanswered) < 4:  # all four submitted before the thread dies
                time.sleep(0.01)
            gate.set()
            done, pending = wait([*futures, streamed], timeout=30)
            assert not pending
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for fut in futures:
            reason = fut.result()["meta_info"]["finish_reason"]
            assert reason["type"] == "abort" and "scheduler thread died" in reason["message"], reason
        assert streamed.result()[-1]["meta_info"]["finish_reason"]["type"] == "abort"
        with pytest.raises(RuntimeError, match="scheduler thread died"):
            engine.generate(input_ids=[1, 2], sampling_params={"max_new_tokens": 1})
        with pytest.raises(RuntimeError, match="scheduler thread died"):
            engine.get_server_info()
    finally:
        engine.shutdown()


def test_prefill_only_batches_skip_the_head(folder):
    """A batch with no logits to compute (max_new_tokens=0, fork's and select's prefixes) never
    calls the LM head with 0 rows (it failed an assertion in the bf16 kernel on AVX2)."""
    with Engine(folder, dtype="bfloat16") as engine:
        head = engine._scheduler.runner.model.lm_head
        real, rows = head.forward, []

        def spy(x):
            rows.append(x.shape[0])
            return real(x)

        head.forward = spy
        out = engine.generate(input_ids=[[3, 4, 5, 6], [8, 9, 10]], sampling_params={"max_new_tokens": 0})
        assert [o["meta_info"]["finish_reason"]["type"] for o in out] == ["length", "length"]
        assert 0 not in rows
        engine.check_kv()
