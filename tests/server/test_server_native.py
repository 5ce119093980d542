"""The native API over raw HTTP against a real server process (default model)."""

from __future__ import annotations

import json
import threading
import time

import requests

GREEDY = {"max_new_tokens": 8, "temperature": 0}
PROMPT = "The capital of France is"


def post(server, path: str, body: dict, **kw) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=120, **kw)


def sse_events(resp: requests.Response) -> list:
    events = []
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            payload = line[6:]
            events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


def test_generate_single_result_shape(server):
    r = post(server, "/generate", {"text": PROMPT, "sampling_params": GREEDY})
    assert r.status_code == 200, r.text
    out = r.json()
    assert "Paris" in out["text"] and len(out["output_ids"]) == 8
    meta = out["meta_info"]
    assert meta["prompt_tokens"] == 5 and meta["completion_tokens"] == 8
    assert meta["finish_reason"] == {"type": "length", "length": 8}
    assert {"id", "cached_tokens", "e2e_latency"} <= set(meta)


def test_generate_list_input_ids_and_rid(server):
    texts = [PROMPT, "The capital of Italy is"]
    r = post(server, "/generate", {"text": texts, "sampling_params": GREEDY, "rid": ["a-1", "a-2"]})
    outs = r.json()
    assert isinstance(outs, list) and [o["meta_info"]["id"] for o in outs] == ["a-1", "a-2"]
    assert "Paris" in outs[0]["text"] and "Rome" in outs[1]["text"]
    ids = post(server, "/tokenize", {"prompt": texts})
    by_ids = post(server, "/generate", {"input_ids": ids.json()["tokens"], "sampling_params": GREEDY}).json()
    assert [o["text"] for o in by_ids] == [o["text"] for o in outs]
    # per-prompt sampling params
    per = post(server, "/generate", {"text": texts, "sampling_params": [{"max_new_tokens": 1}, {"max_new_tokens": 3}]})
    assert [o["meta_info"]["completion_tokens"] for o in per.json()] == [1, 3]


def test_generate_n_and_prefill_only(server):
    outs = post(server, "/generate", {"text": PROMPT, "sampling_params": {"max_new_tokens": 4, "n": 3, "seed": 1}}).json()
    assert isinstance(outs, list) and len(outs) == 3
    cached = post(server, "/generate", {"text": PROMPT + " a prefix", "sampling_params": {"max_new_tokens": 0}}).json()
    assert cached["text"] == "" and cached["output_ids"] == []


def test_generate_logprobs(server):
    body = {"text": PROMPT, "sampling_params": {"max_new_tokens": 3, "temperature": 0}, "return_logprob": True,
            "top_logprobs_num": 2, "return_text_in_logprobs": True, "logprob_start_len": 0}
    meta = post(server, "/generate", body).json()["meta_info"]
    assert len(meta["input_token_logprobs"]) == 5 and meta["input_token_logprobs"][0][0] is None
    assert len(meta["output_token_logprobs"]) == 3 and meta["output_token_logprobs"][0][2] == " Paris"
    assert len(meta["output_top_logprobs"]) == 3 and len(meta["output_top_logprobs"][0]) == 2
    assert meta["output_top_logprobs"][0][0][1] == meta["output_token_logprobs"][0][1]  # greedy = top-1


def test_generate_stream_is_cumulative_and_matches_non_streamed(server):
    whole = post(server, "/generate", {"text": PROMPT, "sampling_params": GREEDY}).json()
    r = post(server, "/generate", {"text": PROMPT, "sampling_params": GREEDY, "stream": True}, stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    texts = [e["text"] for e in events[:-1]]
    assert len(texts) > 1 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert texts[-1] == whole["text"] and events[-2]["meta_info"]["finish_reason"]["type"] == "length"


def test_stop_string_is_trimmed(server):
    out = post(server, "/generate", {"text": PROMPT, "sampling_params": {**GREEDY, "stop": "."}}).json()
    assert out["text"] == " Paris" and out["meta_info"]["finish_reason"] == {"type": "stop", "matched": "."}


def test_info_routes(server):
    for path in ("/get_model_info", "/model_info"):
        info = requests.get(server.url + path, timeout=30).json()
        assert info["is_generation"] is True and info["model_path"].endswith(".gguf")
        assert "<|im_start|>" in info["chat_template"]
    for path in ("/server_info", "/get_server_info"):
        info = requests.get(server.url + path, timeout=30).json()
        assert info["context_length"] == 8192 and "held_slots" in info and "free_slots" in info


def test_health_and_flush_cache(server):
    assert requests.get(server.url + "/health", timeout=30).json() == {"status": "ok"}
    assert requests.get(server.url + "/health_generate", timeout=60).status_code == 200
    server.wait_idle()
    assert requests.post(server.url + "/flush_cache", timeout=30).json()["success"] is True
    assert requests.get(server.url + "/flush_cache", timeout=30).status_code == 200
    assert server.server_info()["cached_tokens"] == 0


def test_flush_cache_is_refused_while_a_request_runs(server):
    body = {"text": PROMPT, "sampling_params": {"max_new_tokens": 200, "ignore_eos": True}, "rid": "busy-1"}
    t = threading.Thread(target=post, args=(server, "/generate", body))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while server.server_info()["num_running_reqs"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = requests.post(server.url + "/flush_cache", timeout=30)
        assert r.status_code == 400 and "running" in r.json()["error"]["message"]
    finally:
        post(server, "/abort_request", {"rid": "busy-1"})
        t.join(timeout=60)


def test_abort_request_ends_a_stream(server):
    body = {"text": PROMPT, "sampling_params": {"max_new_tokens": 500, "ignore_eos": True}, "stream": True,
            "rid": "to-abort"}
    with post(server, "/generate", body, stream=True) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith(b"data: "))
        assert json.loads(first[6:])["meta_info"]["finish_reason"] is None
        assert post(server, "/abort_request", {"rid": "to-abort"}).json() == {"success": True}
        events = [json.loads(line[6:]) for line in lines if line.startswith(b"data: {")]
    assert events[-1]["meta_info"]["finish_reason"]["type"] == "abort"
    assert events[-1]["meta_info"]["completion_tokens"] < 500
    assert server.wait_idle()["held_slots"] == 0


def test_concate_and_append_request_is_accepted(server):
    assert post(server, "/concate_and_append_request", {"src_rids": ["a"], "dst_rid": "b"}).status_code == 200


def test_errors_name_the_field(server):
    r = post(server, "/generate", {"text": PROMPT, "sampling_params": {"temperature": -1}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "sampling_params.temperature"
    r = post(server, "/generate", {"text": PROMPT, "sampling_parms": {}})
    err = r.json()["error"]
    assert r.status_code == 400 and "sampling_parms" in err["message"] and "sampling_params" in err["message"]
    r = post(server, "/generate", {"text": PROMPT, "stream": "yes"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
    r = requests.get(server.url + "/no_such_route", timeout=30)
    assert r.status_code == 404 and "error" in r.json()


def test_non_finite_floats_are_sent_as_null():
    from sgl.runtime.server.jsonio import dumps

    assert json.loads(dumps({"a": [float("-inf"), 1.5, float("nan")]})) == {"a": [None, 1.5, None]}
