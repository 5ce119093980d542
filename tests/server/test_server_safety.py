"""Safety: API key, body limit, over-long prompts, clients that disconnect, and a fuzz of
malformed requests; after each, the server keeps serving and holds no KV slot."""

from __future__ import annotations

import json
import random
import socket
import threading
from urllib.parse import urlparse

import requests
from sgl.runtime.server.launch import build_parser

PROMPT = "The capital of France is"
LONG = {"max_new_tokens": 2000, "ignore_eos": True}  # minutes of decoding unless aborted


def assert_serves(server, **kw) -> None:
    r = requests.post(server.url + "/generate", timeout=60, **kw,
                      json={"text": PROMPT, "sampling_params": {"max_new_tokens": 2, "temperature": 0}})
    assert r.status_code == 200 and r.json()["meta_info"]["completion_tokens"] == 2


def test_default_bind_is_localhost():
    args = build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.api_key is None


def test_api_key_is_required_except_on_health(secure_server, auth):
    url = secure_server.url
    assert requests.get(url + "/health", timeout=30).status_code == 200
    for method, path in (("GET", "/get_model_info"), ("GET", "/server_info"), ("POST", "/generate"),
                         ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/flush_cache")):
        r = requests.request(method, url + path, json={"text": "hi"}, timeout=30)
        assert r.status_code == 401 and "api-key" in r.json()["error"]["message"], path
        r = requests.request(method, url + path, json={"text": "hi"}, timeout=30,
                             headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, path
    assert requests.get(url + "/get_model_info", headers=auth, timeout=30).status_code == 200
    assert_serves(secure_server, headers=auth)


def test_openai_client_with_api_key(secure_server, auth):
    import openai

    client = openai.OpenAI(base_url=secure_server.url + "/v1", api_key=auth["Authorization"][7:], max_retries=0)
    resp = client.completions.create(model="tiny", prompt="hello", max_tokens=3, temperature=0)
    assert resp.usage.completion_tokens == 3
    bad = openai.OpenAI(base_url=secure_server.url + "/v1", api_key="nope", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError:
        pass


def test_body_limit(secure_server, auth, small_body_limit):
    big = {"text": "x" * (small_body_limit + 10)}
    r = requests.post(secure_server.url + "/generate", json=big, headers=auth, timeout=30)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]

    def chunked():  # no content-length: the limit holds while the body streams in
        data = json.dumps(big).encode()
        for i in range(0, len(data), 8192):
            yield data[i:i + 8192]

    r = requests.post(secure_server.url + "/generate", data=chunked(), headers=auth, timeout=30)
    assert r.status_code == 413
    assert_serves(secure_server, headers=auth)


def test_over_long_prompt_is_a_400(secure_server, auth):
    for path, body in (("/generate", {"text": "hello " * 2000}),
                       ("/v1/completions", {"prompt": "hello " * 2000}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello " * 2000}]}),
                       ("/generate", {"input_ids": [5] * 5000})):
        r = requests.post(secure_server.url + path, json=body, headers=auth, timeout=60)
        assert r.status_code == 400 and "context length" in r.json()["error"]["message"], (path, r.text)
    assert_serves(secure_server, headers=auth)


# ---- clients that go away ---------------------------------------------------------------------

def _send(server, path: str, body: dict) -> socket.socket:
    u = urlparse(server.url)
    s = socket.create_connection((u.hostname, u.port), timeout=120)
    payload = json.dumps(body).encode()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return s


def _drop_mid_stream(server, path: str, body: dict, events: int) -> None:
    s = _send(server, path, body)
    buf = b""
    while buf.count(b"data: ") < events:
        data = s.recv(65536)
        assert data, "the server closed the stream early"
        buf += data
    s.close()


def _drop_before_result(server, path: str, body: dict, started: threading.Event) -> None:
    s = _send(server, path, body)
    started.wait(timeout=60)
    s.close()


def test_50_clients_that_disconnect_leave_no_slot_held(server):
    server.wait_idle()
    native = {"text": PROMPT, "sampling_params": LONG, "stream": True}
    chat = {"messages": [{"role": "user", "content": "Count to a thousand."}], "max_tokens": 2000,
            "ignore_eos": True, "stream": True}
    started = threading.Event()
    threads = []
    for i in range(50):
        if i < 25:
            t = threading.Thread(target=_drop_mid_stream, args=(server, "/generate", native, 1 + i % 3))
        elif i < 40:
            t = threading.Thread(target=_drop_mid_stream, args=(server, "/v1/chat/completions", chat, 2 + i % 2))
        elif i < 45:
            t = threading.Thread(target=_drop_before_result, args=(
                server, "/generate", {"text": f"{i} {PROMPT}", "sampling_params": LONG}, started))
        else:
            t = threading.Thread(target=_drop_before_result, args=(
                server, "/v1/completions", {"prompt": f"{i} {PROMPT}", "max_tokens": 2000, "ignore_eos": True},
                started))
        threads.append(t)
        t.start()
    for t in threads[:40]:
        t.join(timeout=120)
    started.set()  # the non-streaming requests have been running meanwhile
    for t in threads[40:]:
        t.join(timeout=60)
    info = server.wait_idle(timeout=60)
    assert info["num_running_reqs"] == 0 and info["num_waiting_reqs"] == 0 and info["held_slots"] == 0, info
    assert_serves(server)


# ---- fuzz -------------------------------------------------------------------------------------

BAD_SAMPLING = [
    {"temperature": -1}, {"temperature": "hot"}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": 0}, {"top_k": -7},
    {"top_k": 2.5}, {"min_p": 2}, {"max_new_tokens": -1}, {"max_new_tokens": 10**12}, {"max_new_tokens": 3.5},
    {"max_new_tokens": "8"}, {"min_new_tokens": 9, "max_new_tokens": 2}, {"n": 0}, {"n": 1000}, {"stop": 5},
    {"stop": [""]}, {"stop": [1, 2]}, {"stop_regex": "("}, {"regex": "("}, {"regex": 5}, {"json_schema": "{bad"},
    {"json_schema": 7}, {"seed": 2**70}, {"seed": "x"}, {"frequency_penalty": 5}, {"presence_penalty": -3},
    {"repetition_penalty": 0}, {"unknown_knob": 1}, {"logit_bias": {"x": 1}}, {"ignore_eos": "yes"},
    {"stop_token_ids": [-1]}, {"stop_token_ids": "x"}, {"regex": "a", "json_schema": "{}"}, {"choices": []},
    {"skip_special_tokens": 1},
]
BAD_NATIVE = [
    {}, {"text": 5}, {"text": None}, {"text": [1, 2]}, {"text": []}, {"input_ids": "abc"}, {"input_ids": [[]]},
    {"input_ids": [-1, 5]}, {"input_ids": [10**9]}, {"input_ids": [1.5]}, {"text": "a", "input_ids": [1]},
    {"text": "a", "return_logprob": "yes"}, {"text": "a", "top_logprobs_num": -1},
    {"text": "a", "top_logprobs_num": 10**9}, {"text": "a", "logprob_start_len": "0"},
    {"text": "a", "stream": 1}, {"text": "a", "rid": 5}, {"text": ["a", "b"], "rid": ["x"]},
    {"text": ["a", "b"], "stream": True}, {"text": "a", "sampling_params": "x"}, {"text": "a", "sampling_params": [1]},
    {"text": ["a", "b"], "sampling_params": [{}]}, {"text": "a", "what": 1}, {"text": "a", "sampling_params": {"n": 2},
                                                                          "stream": True},
]
BAD_CHAT = [
    {}, {"messages": []}, {"messages": "hi"}, {"messages": [{"role": "wizard", "content": "x"}]},
    {"messages": [{"content": "x"}]}, {"messages": [{"role": "user", "content": 5}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
]
BAD_CHAT_FIELDS = [
    {"temperature": "x"}, {"temperature": -1}, {"temperature": 3}, {"top_p": 0}, {"n": 0}, {"n": 200},
    {"max_tokens": -1}, {"max_tokens": "10"}, {"max_tokens": 10**9}, {"logprobs": "yes"}, {"stop": 5}, {"stop": [""]}, {"seed": "x"},
    {"seed": 2**80}, {"response_format": {"type": "xml"}}, {"response_format": {"type": "json_schema"}},
    {"response_format": "json"}, {"stream": "yes"}, {"stream_options": {"include_usage": "y"}},
    {"logit_bias": {"abc": 1}}, {"logit_bias": {"5": "x"}}, {"regex": "("}, {"json_schema": "{bad"},
    {"top_k": 0}, {"min_p": -1}, {"repetition_penalty": 9}, {"frequency_penalty": 3}, {"presence_penalty": "x"},
    {"stop_token_ids": ["a"]}, {"min_tokens": -1}, {"ignore_eos": "no"},
]
CHAT_ONLY_FIELDS = [{"max_completion_tokens": -5}, {"top_logprobs": 50}, {"top_logprobs": 2}, {"logprobs": 1}]
BAD_COMPLETION = [
    {}, {"prompt": 5}, {"prompt": []}, {"prompt": [[]]}, {"prompt": [-1]}, {"prompt": [[10**9]]}, {"prompt": None},
    {"prompt": "a", "max_tokens": 10**9}, {"prompt": "a", "logprobs": 100}, {"prompt": "a", "echo": "x"},
    {"prompt": "a", "suffix": "x"}, {"prompt": "a", "best_of": 3}, {"prompt": "a", "n": 1.5},
    {"prompt": ["a", 1]},
]
BAD_JSON = [b"", b"{", b"{bad", b"[1, 2]", b"null", b"42", b'"text"', b"{\"text\": }", b"\xff\xfe\x00",
            b"{\"text\": \"a\",}", b"{'text': 'a'}", b"{\"text\": NaN, \"x\": Infinity}",
            b"{\"text\": \"a\", \"sampling_params\": {\"temperature\": NaN}}",
            b"{\"text\": \"a\", \"sampling_params\": {\"logit_bias\": {\"5\": Infinity}}}"]
BAD_ROUTES = [("POST", "/abort_request", {}), ("POST", "/abort_request", {"rid": 5}), ("GET", "/generate", None),
              ("POST", "/tokenize", {"prompt": 5}), ("POST", "/nope", {}), ("DELETE", "/health", None),
              ("POST", "/tokenize", {}), ("POST", "/v1/models", {})]


def fuzz_cases(seed: int = 0) -> list[tuple[str, str, bytes | None]]:
    """(method, path, body) of malformed requests; each must get a 4xx."""
    cases: list[tuple[str, str, bytes | None]] = []

    def add(path: str, body: dict) -> None:
        cases.append(("POST", path, json.dumps(body).encode()))

    for sp in BAD_SAMPLING:
        add("/generate", {"text": PROMPT, "sampling_params": sp})
        add("/generate", {"text": [PROMPT, PROMPT], "sampling_params": [{"max_new_tokens": 1}, sp]})
    for body in BAD_NATIVE:
        add("/generate", body)
    for body in BAD_CHAT:
        add("/v1/chat/completions", body)
    for fields in BAD_CHAT_FIELDS:
        add("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields})
        add("/v1/completions", {"prompt": "hi", "max_tokens": 2, **fields})
    for fields in CHAT_ONLY_FIELDS:
        add("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields})
    for body in BAD_COMPLETION:
        add("/v1/completions", body)
    for path in ("/generate", "/v1/completions", "/v1/chat/completions", "/abort_request", "/tokenize"):
        for raw in BAD_JSON:
            cases.append(("POST", path, raw))
    for method, path, body in BAD_ROUTES:
        cases.append((method, path, None if body is None else json.dumps(body).encode()))
    rng = random.Random(seed)
    for _ in range(20):  # random bytes
        cases.append(("POST", rng.choice(["/generate", "/v1/chat/completions"]),
                      bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))))
    return cases


def test_fuzz_of_malformed_requests_gets_4xx_and_the_server_keeps_serving(server):
    cases = fuzz_cases()
    assert len(cases) >= 200
    session = requests.Session()
    wrong = []
    for method, path, body in cases:
        r = session.request(method, server.url + path, data=body, timeout=60,
                            headers={"Content-Type": "application/json"})
        if not 400 <= r.status_code < 500 or "error" not in r.json():
            wrong.append((method, path, body[:120] if body else body, r.status_code, r.text[:200]))
    assert not wrong, f"{len(wrong)} of {len(cases)} malformed requests were not refused: {wrong[:10]}"
    info = server.wait_idle()
    assert info["held_slots"] == 0 and info["num_running_reqs"] == 0
    assert_serves(server)
