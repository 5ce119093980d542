"""No lost request over HTTP: with faults injected into the engine's steps, every route answers
within a deadline, a failed request is a 500 (or an SSE error event) naming the error, /health
stays 200, and the server goes on serving."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import requests
import uvicorn
from conftest import free_port
from fault_injection import FaultInjector
from sgl.runtime import Engine
from sgl.runtime.server.app import create_app

DEADLINE_S = 180
PARAMS = {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def live(tiny_model):
    """(url, engine): the app on a real uvicorn server on 127.0.0.1, in this process, so the
    test can wrap the engine's step functions."""
    engine = Engine(tiny_model, dtype="float32", max_total_tokens=3000, chunked_prefill_size=64)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    yield url, engine
    server.should_exit = True
    thread.join(timeout=20)
    engine.shutdown()


def sse_events(r: requests.Response) -> list[dict]:
    events = []
    for line in r.iter_lines():
        if line.startswith(b"data: {"):
            events.append(json.loads(line[6:]))
        elif line == b"data: [DONE]":
            break
    return events


def call(url: str, i: int) -> str:
    """One request of kind i % 4; returns 'ok' or 'failed' after checking the answer's shape."""
    time.sleep(0.05 * i)  # arrivals spread over ~3 s: many steps, each failing only its batch
    prompt = f"Request {i}: the weather in town number {i} is"
    kind = i % 4
    if kind == 0:
        r = requests.post(url + "/generate", json={"text": prompt, "sampling_params": PARAMS}, timeout=DEADLINE_S)
        if r.status_code == 500:
            assert "InjectedFault" in r.json()["error"]["message"], r.text
            return "failed"
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["finish_reason"]["type"] == "length"
        return "ok"
    if kind == 1:
        body = {"text": prompt, "sampling_params": PARAMS, "stream": True, "return_logprob": True}
        with requests.post(url + "/generate", json=body, stream=True, timeout=DEADLINE_S) as r:
            assert r.status_code == 200, r.text
            events = sse_events(r)
    else:
        route = "/v1/completions" if kind == 2 else "/v1/chat/completions"
        body = {"model": "m", "max_tokens": 8, "temperature": 0}
        body.update({"prompt": prompt} if kind == 2 else {"messages": [{"role": "user", "content": prompt}]})
        body["stream"] = i % 8 >= 4
        with requests.post(url + route, json=body, stream=body["stream"], timeout=DEADLINE_S) as r:
            if not body["stream"]:
                if r.status_code == 500:
                    assert "InjectedFault" in r.json()["error"]["message"], r.text
                    return "failed"
                assert r.status_code == 200, r.text
                return "ok"
            assert r.status_code == 200, r.text
            events = sse_events(r)
    assert events, "the stream ended without an event"
    if "error" in events[-1]:
        assert "InjectedFault" in events[-1]["error"]["message"], events[-1]
        assert events[-1]["error"]["code"] == 500
        return "failed"
    return "ok"


def test_http_routes_answer_under_random_faults(live):
    url, engine = live
    pool = ThreadPoolExecutor(32)  # NOTE: not `with`: its exit would wait for hung callers
    try:
        with FaultInjector(engine, rate=0.04, seed=2).active() as faults:
            futures = [pool.submit(call, url, i) for i in range(64)]
            health = requests.get(url + "/health", timeout=30)  # answered while faults happen
            done, pending = wait(futures, timeout=DEADLINE_S)
            assert not pending, f"{len(pending)} HTTP callers still waiting after {DEADLINE_S} s"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    outcomes = [f.result() for f in futures]
    assert "failed" in outcomes and "ok" in outcomes, (outcomes, faults.raised)
    assert health.status_code == 200
    assert requests.get(url + "/health", timeout=30).status_code == 200
    engine.check_kv()
    r = requests.post(url + "/generate", json={"text": "After the faults,", "sampling_params": PARAMS}, timeout=60)
    assert r.status_code == 200 and r.json()["meta_info"]["finish_reason"]["type"] == "length"
