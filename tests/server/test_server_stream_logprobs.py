"""Streamed logprobs over real HTTP with SGLang's incremental semantics: the native /generate
stream, `sgl.RuntimeEndpoint` programs, and SGLang's own frontend pointed at our server. Each
stream's logprob rows concatenate to the non-streamed ones; `output_token_logprobs_length`
equals `completion_tokens` so far."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import requests
import sgl

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lang"))
from stream_checks import check_incremental  # noqa: E402

PROMPT = "The three primary colors are"
LOGPROBS = {"return_logprob": True, "top_logprobs_num": 2, "return_text_in_logprobs": True}


def _flush(server) -> None:
    requests.post(server.url + "/flush_cache", timeout=30).raise_for_status()


def _events(resp: requests.Response) -> list[dict]:
    events = []
    for line in resp.iter_lines():
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            events.append(json.loads(payload))
    return events


def test_generate_stream_events_carry_the_new_rows(server):
    body = {"text": PROMPT, "sampling_params": {"max_new_tokens": 8, "temperature": 0}, **LOGPROBS}
    _flush(server)
    full = requests.post(server.url + "/generate", json=body, timeout=120).json()
    assert full["meta_info"]["output_token_logprobs_length"] == len(full["meta_info"]["output_token_logprobs"])
    _flush(server)
    with requests.post(server.url + "/generate", json={**body, "stream": True}, stream=True, timeout=120) as resp:
        assert resp.status_code == 200
        events = _events(resp)
    check_incremental([e["meta_info"] for e in events], full["meta_info"])
    texts = [e["text"] for e in events]  # text stays cumulative, as SGLang's default
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])) and texts[-1] == full["text"]
    # prompt rows are the request's whole state: on every event
    assert all(e["meta_info"]["input_token_logprobs"] == full["meta_info"]["input_token_logprobs"] for e in events)


@sgl.function
def colors(s):
    s += PROMPT + sgl.gen("answer", max_tokens=8, **LOGPROBS)


def test_runtime_endpoint_program_streams_the_new_rows(server):
    ep = sgl.RuntimeEndpoint(server.url)
    try:
        assert ep.get_model_name() == ep.get_model_info()["model_path"] == server.server_info()["model_path"]
        _flush(server)
        full = colors.run(backend=ep, temperature=0)
        assert full.error() is None
        _flush(server)
        state = colors.run(backend=ep, temperature=0, stream=True)

        async def read() -> list[tuple[str, dict]]:
            return [(p, m) async for p, m in state.text_async_iter("answer", return_meta_data=True)]

        chunks = asyncio.run(read())
        assert state.error() is None
        assert "".join(p for p, _ in chunks) == full["answer"]
        check_incremental([m for _, m in chunks], full.get_meta_info("answer"))
    finally:
        ep.shutdown()


def test_sglang_own_frontend_streams_logprobs_from_our_server(server):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sglang_frontend_client.py")
    out = subprocess.run([sys.executable, script, server.url, PROMPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["model_name"] == server.server_info()["model_path"]
    assert "".join(piece for piece, _ in result["chunks"]) == result["text"]
    check_incremental([m for _, m in result["chunks"]], result["meta"])
