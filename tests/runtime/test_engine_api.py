"""Engine behaviour on a tiny random Llama: batching under memory pressure, sampling options,
stop handling, streaming, logprobs, abort, n > 1, and errors that name the field."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine

GREEDY = {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    path = str(tmp_path_factory.mktemp("tiny"))
    return save_tiny_checkpoint(tiny_llama_config("plain"), path, default_tokenizer_folder)


@pytest.fixture(scope="module")
def engine(folder):
    with Engine(folder, dtype="float32") as e:
        yield e


def random_prompts(n: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 40000) for _ in range(rng.randrange(8, 40))] for _ in range(n)]


def test_64_concurrent_requests_with_quarter_of_the_memory(folder):
    batch = random_prompts(64, seed=11)
    demand = sum(len(p) + GREEDY["max_new_tokens"] for p in batch)
    with Engine(folder, dtype="float32") as solo_engine:
        solo = []
        for ids in batch:
            solo.append(solo_engine.generate(input_ids=ids, sampling_params=GREEDY)["output_ids"])
            solo_engine.flush_cache()
    with Engine(folder, dtype="float32", max_total_tokens=demand // 4) as engine:
        with ThreadPoolExecutor(65) as pool:  # 64 callers at once: the scheduler batches them
            # NOTE: the scheduler thread waits on `gate` until all 64 requests are queued, so it
            # admits them together however the callers' threads are timed (else a fast engine
            # serves early callers before late ones arrive, and nothing needs retracting).
            gate = threading.Event()
            held = pool.submit(engine._call, gate.wait)
            futures = [pool.submit(engine.generate, input_ids=ids, sampling_params=GREEDY) for ids in batch]
            while engine._inbox.qsize() < len(batch):
                time.sleep(0.01)
            gate.set()
            held.result()
            results = [f.result() for f in futures]
        assert [r["output_ids"] for r in results] == solo
        info = engine.get_server_info()
        assert info["retractions"] > 0
        assert info["free_slots"] + info["cached_tokens"] == demand // 4 and info["held_slots"] == 0
        engine.check_kv()


def test_shared_500_token_prefix_is_cached(engine):
    prefix = random_prompts(1, seed=12)[0] * 20
    prefix = prefix[:500]
    first = engine.generate(input_ids=prefix + [5, 6, 7], sampling_params={"max_new_tokens": 4})
    second = engine.generate(input_ids=prefix + [8, 9], sampling_params={"max_new_tokens": 4})
    assert first["meta_info"]["cached_tokens"] < 500
    assert second["meta_info"]["cached_tokens"] >= 500


def test_prefill_only_request_caches_prompt(engine):
    ids = random_prompts(1, seed=13)[0]
    res = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 0})
    assert res["text"] == "" and res["output_ids"] == [] and res["meta_info"]["finish_reason"]["length"] == 0
    again = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 0})
    assert again["meta_info"]["cached_tokens"] == len(ids)


def test_seeded_sampling_is_reproducible_and_batch_independent(engine):
    ids = random_prompts(1, seed=14)[0]
    params = {"max_new_tokens": 16, "temperature": 1.0, "top_p": 0.9, "top_k": 50, "min_p": 0.01, "seed": 7}
    a = engine.generate(input_ids=ids, sampling_params=params)["output_ids"]
    others = random_prompts(3, seed=15)
    b = engine.generate(input_ids=[ids, *others], sampling_params=[params] + [{"max_new_tokens": 16}] * 3)[0]
    assert a == b["output_ids"]
    c = engine.generate(input_ids=ids, sampling_params={**params, "seed": 8})["output_ids"]
    assert c != a


def test_top_k_1_is_greedy_and_penalties_change_output(engine):
    ids = random_prompts(1, seed=16)[0]
    greedy = engine.generate(input_ids=ids, sampling_params=GREEDY)["output_ids"]
    top1 = engine.generate(input_ids=ids, sampling_params={**GREEDY, "temperature": 1.0, "top_k": 1})["output_ids"]
    assert top1 == greedy
    penalized = engine.generate(input_ids=ids, sampling_params={**GREEDY, "frequency_penalty": 2.0,
                                                                "presence_penalty": 2.0})["output_ids"]
    repeats = len(greedy) - len(set(greedy))
    assert len(penalized) - len(set(penalized)) <= repeats
    rep = engine.generate(input_ids=ids, sampling_params={**GREEDY, "repetition_penalty": 2.0})["output_ids"]
    assert not set(rep[:1]) & set(ids) or rep != greedy


def test_stop_string_across_token_boundary_is_trimmed(engine):
    ids = random_prompts(1, seed=17)[0]
    full = engine.generate(input_ids=ids, sampling_params=GREEDY)
    pieces = [engine.tokenizer.decode([t]) for t in full["output_ids"]]
    k = next(i for i in range(2, len(pieces) - 1) if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 1)
    stop = pieces[k][-2:] + pieces[k + 1][:1]  # spans the boundary between tokens k and k + 1
    res = engine.generate(input_ids=ids, sampling_params={**GREEDY, "stop": [stop]})
    assert res["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert res["text"] == full["text"][: full["text"].index(stop)]
    kept = engine.generate(input_ids=ids, sampling_params={**GREEDY, "stop": stop, "no_stop_trim": True})
    assert kept["text"].endswith(stop)


def test_stop_token_ids_and_min_new_tokens(engine):
    ids = random_prompts(1, seed=18)[0]
    full = engine.generate(input_ids=ids, sampling_params=GREEDY)["output_ids"]
    stop_id = full[3]
    res = engine.generate(input_ids=ids, sampling_params={**GREEDY, "stop_token_ids": [stop_id]})
    assert res["output_ids"] == full[: full.index(stop_id) + 1]
    assert res["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_id}
    late = engine.generate(input_ids=ids, sampling_params={**GREEDY, "stop_token_ids": [stop_id],
                                                           "min_new_tokens": 10})
    assert len(late["output_ids"]) >= 10


def test_streaming_chunks_are_cumulative_and_end_with_final_text(engine):
    prompt = "The quick brown fox"
    final = engine.generate(prompt, {**GREEDY, "stop": ["zz"]})
    chunks = list(engine.generate(prompt, {**GREEDY, "stop": ["zz"]}, stream=True))
    texts = [c["text"] for c in chunks]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert texts[-1] == final["text"] and "\ufffd" not in "".join(texts)
    assert chunks[-1]["meta_info"]["finish_reason"] is not None


def test_logprob_rows_shape(engine):
    ids = random_prompts(1, seed=19)[0]
    res = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 4, "temperature": 0},
                          return_logprob=True, logprob_start_len=3, top_logprobs_num=2, return_text_in_logprobs=True)
    meta = res["meta_info"]
    assert [r[1] for r in meta["input_token_logprobs"]] == ids[3:]
    assert meta["input_token_logprobs"][0][0] is None and isinstance(meta["input_token_logprobs"][0][2], str)
    assert len(meta["output_token_logprobs"]) == len(res["output_ids"])
    assert all(len(top) == 2 for top in meta["output_top_logprobs"])
    assert meta["output_top_logprobs"][0][0][1] == res["output_ids"][0]  # greedy picks the top token


def test_n_copies_share_the_prompt(engine):
    ids = random_prompts(1, seed=20)[0]
    results = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 8, "n": 3, "seed": 1})
    assert len(results) == 3
    assert all(r["meta_info"]["cached_tokens"] >= len(ids) - 1 for r in results)
    assert len({tuple(r["output_ids"]) for r in results}) > 1


def test_a_calls_prompts_reach_the_scheduler_together(engine, monkeypatch):
    """One generate() of several prompts is one inbox item: the scheduler takes them all in one
    step, whatever the threads' timing (queued one by one, a step could start after the first)."""
    items = []
    put = engine._inbox.put
    monkeypatch.setattr(engine._inbox, "put", lambda item, *a, **k: (items.append(item), put(item, *a, **k))[1])
    before = engine.get_server_info()["steps"]
    engine.generate(input_ids=random_prompts(5, seed=22), sampling_params={"max_new_tokens": 1})
    adds = [payload for kind, payload in items if kind == "add"]
    assert [len(p) for p in adds] == [5]
    assert engine.get_server_info()["steps"] - before == 1  # one extend for all five, nothing to decode


def test_abort_frees_slots(engine):
    ids = random_prompts(1, seed=21)[0]
    stream = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 500, "ignore_eos": True},
                             stream=True, rid="to-abort")
    next(stream)
    threading.Timer(0.05, engine.abort, args=("to-abort",)).start()
    last = list(stream)[-1]
    assert last["meta_info"]["finish_reason"]["type"] == "abort"
    engine.check_kv()
    assert engine.get_server_info()["held_slots"] == 0


def test_invalid_parameters_name_the_field(engine):
    for params, field in [({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
                          ({"max_new_tokens": -3}, "max_new_tokens"), ({"top_k": 0}, "top_k"),
                          ({"stop": 5}, "stop"), ({"n": 0}, "n"), ({"bogus": 1}, "bogus"),
                          ({"stop_regex": "("}, "stop_regex")]:
        with pytest.raises(ValueError, match=field):
            engine.generate("hi", params)
    with pytest.raises(ValueError, match="context length"):
        engine.generate(input_ids=[5] * 5000)
    with pytest.raises(ValueError, match="input_ids"):
        engine.generate(input_ids=[10**9])
    assert engine.generate("still alive", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2
    engine.check_kv()


def test_async_generate_and_stream(engine):
    import asyncio

    ids = random_prompts(1, seed=22)[0]

    async def run() -> tuple[dict, list[dict]]:
        whole = await engine.async_generate(input_ids=ids, sampling_params=GREEDY)
        pieces = [c async for c in engine.async_stream(input_ids=ids, sampling_params=GREEDY)]
        return whole, pieces

    whole, pieces = asyncio.run(run())
    assert pieces[-1]["output_ids"] == whole["output_ids"] and pieces[-1]["text"] == whole["text"]


EXIT_SCRIPT = """
import sys, threading, time
from sgl.runtime import Engine
engine = Engine(sys.argv[1], max_total_tokens=65536)
params = {"max_new_tokens": 3000, "temperature": 0, "ignore_eos": True}
prompts = [[5 + i, 6, 7, 8] for i in range(16)]
threading.Thread(target=lambda: engine.generate(input_ids=prompts, sampling_params=params), daemon=True).start()
time.sleep(float(sys.argv[2]))
print("exit")
"""


def test_an_engine_never_shut_down_stops_cleanly_at_exit(folder):
    """A script that exits while its engine (never shut down) is decoding a batch exits 0: the
    engine stops at exit. Without that the interpreter's teardown met the scheduler thread freeing
    tensors and aborted ("terminate called without an active exception", rc 134: 7 runs in 8)."""
    for wait in ("1.0", "1.6"):
        run = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, folder, wait], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0 and run.stdout.strip() == "exit", (run.returncode, run.stderr[-2000:])
