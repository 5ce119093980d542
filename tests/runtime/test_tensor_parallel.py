"""Tensor parallelism on the CPU (gloo, real worker processes): tp_size=2 gives the greedy tokens
of tp_size=1 and prompt logprobs within 1e-4 (float32), alone, batched, on a cached prefix and
in chunks, for Llama with GQA (tied head, biases: the row-parallel bias is added once) and for
Gemma 2 with one kv head (fewer than the ranks: replicated); sgl.Runtime(tp_size=2) runs
language programs. One tp=2 engine per model, shared by every assertion."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sgl
import torch
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine

sys.path.insert(0, str(Path(__file__).parent / "models"))
from zoo_configs import tiny_config  # noqa: E402

GREEDY = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
ARGS = dict(dtype="float32", max_total_tokens=4096, context_length=512, chunked_prefill_size=32)


def _checkpoint(name: str):
    if name == "llama_gqa":  # 8 heads, 2 kv heads, tied head, q/k/v and o biases
        return tiny_llama_config("gqa_llama3_tied_bias")
    cfg = tiny_config("Gemma2ForCausalLM")  # soft caps, sliding window, sandwich norms
    cfg.num_key_value_heads = 1
    return cfg


@pytest.fixture(scope="module", params=["llama_gqa", "gemma2_one_kv_head"])
def pair(request, tmp_path_factory, default_tokenizer_folder):
    """(tp=1 engine, sgl.Runtime with tp_size=2) on the same checkpoint."""
    folder = save_tiny_checkpoint(_checkpoint(request.param), str(tmp_path_factory.mktemp(request.param)),
                                  default_tokenizer_folder)
    one = Engine(folder, **ARGS)
    two = sgl.Runtime(folder, tp_size=2, **ARGS)
    yield one, two
    two.engine.shutdown()
    one.shutdown()


def _prompts(n: int, lo: int, hi: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 40000) for _ in range(rng.randrange(lo, hi))] for _ in range(n)]


def _same(a: dict, b: dict) -> None:
    assert a["output_ids"] == b["output_ids"]
    for key in ("input_token_logprobs", "output_token_logprobs"):
        la = torch.tensor([r[0] for r in a["meta_info"][key] if r[0] is not None])
        lb = torch.tensor([r[0] for r in b["meta_info"][key] if r[0] is not None])
        torch.testing.assert_close(lb, la, atol=1e-4, rtol=0)


def _both(pair, ids, logprob_start_len: int = 0):
    one, two = pair
    kw = dict(sampling_params=GREEDY, return_logprob=True, logprob_start_len=logprob_start_len)
    return one.generate(input_ids=ids, **kw), two.engine.generate(input_ids=ids, **kw)


def test_alone_batched_and_chunked(pair):
    ids = _prompts(1, 5, 20, 0)[0]
    _same(*_both(pair, ids))
    batch = _prompts(6, 5, 90, 1)  # prompts over 32 tokens go in chunks of 32
    assert any(len(p) > 32 for p in batch)
    for a, b in zip(*_both(pair, batch)):
        _same(a, b)


def test_cached_prefix(pair):
    prefix = _prompts(1, 40, 41, 2)[0]
    first, second = prefix + [11, 12, 13], prefix + [21, 22]
    _both(pair, first)
    a, b = _both(pair, second, logprob_start_len=len(second) - 1)  # prompt logprobs of the new tokens only
    _same(a, b)
    assert b["meta_info"]["cached_tokens"] >= 40 and a["meta_info"]["cached_tokens"] >= 40
    pair[1].engine.check_kv()


def test_language_program(pair):
    @sgl.function
    def qa(s, topic):
        s += "Facts about " + topic + ":"
        s += sgl.gen("fact", max_tokens=8, temperature=0)
        s += " So it is " + sgl.select("kind", choices=["good", "bad", "unknown"])
        forks = s.fork(2)
        for i, f in enumerate(forks):
            f += f" Reason {i}:" + sgl.gen("why", max_tokens=4, temperature=0)
        forks.join()
        s += sgl.gen("more", max_tokens=4, temperature=0)

    one, two = pair
    reference = [qa.run(topic=t, backend=sgl.Runtime.from_engine(one)) for t in ("cats", "rain")]
    states = qa.run_batch([{"topic": "cats"}, {"topic": "rain"}], backend=two)
    for ref, st in zip(reference, states):
        assert (st["fact"], st["kind"], st["more"]) == (ref["fact"], ref["kind"], ref["more"])


def test_rank_holds_its_share_of_the_weights(pair):
    one, two = pair
    def weight_bytes(engine):
        model = engine._scheduler.runner.model
        return sum(p.numel() * p.element_size() for p in model.parameters())
    share = weight_bytes(two.engine) / weight_bytes(one)
    assert 0.45 < share < 0.6  # norms and the small replicated parts are whole on every rank
    kv = two.engine._scheduler.runner.kv_pool.kv_heads
    assert kv == 1  # 2 kv heads over 2 ranks, or 1 kv head replicated
    assert two.engine.get_server_info()["tp_size"] == 2


def test_bad_split_names_tp_size(default_tokenizer_folder, tmp_path):
    from sgl.runtime.config import EngineConfig
    from sgl.runtime.distributed.tp_transform import apply_tp
    from sgl.runtime.loader import load_model

    folder = save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path), default_tokenizer_folder)
    cfg = EngineConfig(model_path=folder, dtype="float32", context_length=64)
    model = load_model(cfg, torch.device("cpu")).model  # 4 heads
    with pytest.raises(ValueError, match="tp_size=3"):
        apply_tp(model, SimpleNamespace(rank=0, size=3))
