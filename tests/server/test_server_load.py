"""200 concurrent streaming clients: all batched by the one engine, each stream's final text
equal to the non-streamed greedy result of its prompt."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import requests

SUBJECTS = ["France", "Italy", "Spain", "Japan", "Germany", "Egypt", "Peru", "Canada", "Kenya", "Norway"]
TEMPLATES = ["The capital of {} is", "The national dish of {} is", "{} is a country in", "The flag of {} has",
             "People in {} speak", "The largest city in {} is", "The currency of {} is", "Tourists in {} visit",
             "The climate of {} is", "A famous river in {} is", "The history of {} began", "Mountains in {} are",
             "Children in {} learn", "The food in {} is", "Music from {} sounds", "Sports in {} include",
             "The weather in {} today", "Trains in {} are", "Old towns in {} have", "Farmers in {} grow"]
PROMPTS = [t.format(s) for t in TEMPLATES for s in SUBJECTS]  # 200 distinct prompts
PARAMS = {"max_new_tokens": 6, "temperature": 0}


def stream_text(url: str, prompt: str) -> tuple[str, int]:
    """The final cumulative text of one native stream, and how many events it had."""
    body = {"text": prompt, "sampling_params": PARAMS, "stream": True}
    last, events = None, 0
    with requests.post(url + "/generate", json=body, stream=True, timeout=600) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                last = json.loads(line[6:])
                events += 1
            elif line == b"data: [DONE]":
                break
    assert last is not None and last["meta_info"]["finish_reason"] is not None
    return last["text"], events


def test_200_concurrent_streams_match_the_non_streamed_greedy_results(server):
    assert len(set(PROMPTS)) == 200
    r = requests.post(server.url + "/generate", json={"text": PROMPTS, "sampling_params": PARAMS}, timeout=600)
    expected = [o["text"] for o in r.json()]
    with ThreadPoolExecutor(max_workers=200) as pool:
        streamed = list(pool.map(lambda p: stream_text(server.url, p), PROMPTS))
    mismatches = [(p, e, s) for p, e, (s, _) in zip(PROMPTS, expected, streamed) if e != s]
    assert not mismatches, f"{len(mismatches)} streams differ from the greedy result: {mismatches[:5]}"
    assert all(events >= 1 for _, events in streamed)
    info = server.wait_idle()
    assert info["held_slots"] == 0 and info["num_running_reqs"] == 0
