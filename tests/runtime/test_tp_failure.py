"""A tensor-parallel rank that dies takes the engine down cleanly: every request waiting on it
ends with an error naming the lost rank (no hang), later calls raise the same message, and a
rank lost while the engine is idle is found too (rank 0 pings the ranks)."""

from __future__ import annotations

import threading
import time

import pytest
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine

LONG = {"max_new_tokens": 900, "temperature": 0, "ignore_eos": True}
WAIT_S = 60  # a safety net against a hang, far above the seconds the failure takes


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder) -> str:
    return save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path_factory.mktemp("tp_fail")),
                                default_tokenizer_folder)


def _engine(folder: str) -> Engine:
    return Engine(folder, tp_size=2, dtype="float32", context_length=1024, max_total_tokens=8192)


def _wait_running(engine: Engine, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while engine.get_server_info()["num_running_reqs"] < n:
        assert time.monotonic() < deadline, "the requests never ran"
        time.sleep(0.05)


def test_a_dying_rank_fails_every_waiting_caller(folder):
    engine = _engine(folder)
    try:
        results: dict[int, object] = {}

        def call(i: int) -> None:
            try:
                results[i] = engine.generate(input_ids=[5 + i, 6, 7, 8], sampling_params=LONG)
            except Exception as e:  # noqa: BLE001 - what the caller sees is what is tested
                results[i] = e

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        _wait_running(engine, 4)
        engine._tp.procs[0].kill()  # rank 1
        for t in threads:
            t.join(WAIT_S)
        assert not any(t.is_alive() for t in threads), "a caller hangs after the rank died"
        for r in results.values():
            assert isinstance(r, dict), r
            reason = r["meta_info"]["finish_reason"]
            assert reason["type"] == "abort" and reason["status_code"] == 500
            assert "a rank is gone" in reason["message"], reason
            assert r["meta_info"]["completion_tokens"] < LONG["max_new_tokens"]
        with pytest.raises(RuntimeError, match="a rank is gone"):
            engine.generate(input_ids=[5, 6], sampling_params={"max_new_tokens": 2})
        with pytest.raises(RuntimeError, match="a rank is gone"):
            engine.get_server_info()  # what the server's /health calls: it answers 503 with this
    finally:
        engine.shutdown()


def test_a_rank_lost_while_idle_is_found(folder):
    engine = _engine(folder)
    try:
        out = engine.generate(input_ids=[5, 6, 7], sampling_params={"max_new_tokens": 3, "temperature": 0})
        assert out["meta_info"]["completion_tokens"] == 3
        engine._tp.procs[0].kill()
        deadline = time.monotonic() + WAIT_S
        while engine._dead is None:  # found by the next ping (every PING_S while idle)
            assert time.monotonic() < deadline, "the idle engine never noticed the lost rank"
            time.sleep(0.1)
        with pytest.raises(RuntimeError, match="a rank is gone"):
            engine.generate(input_ids=[5, 6], sampling_params={"max_new_tokens": 2})
    finally:
        engine.shutdown()
