"""Tensor parallelism on the CPU (gloo, real worker processes): tp_size=2 gives the greedy tokens
of tp_size=1 and prompt logprobs within 1e-4 (float32), alone, batched, on a cached prefix and
in chunks, for Llama with GQA (tied head, biases: the row-parallel bias is added once) and for
Gemma 2 with one kv head (fewer than the ranks: replicated); sgl.Runtime(tp_size=2) runs
language programs. One tp=2 engine per model, shared by every assertion."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sgl
import torch
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine
from tp_checks import ARGS, check_alone_batched_and_chunked, check_cached_prefix, weight_bytes

sys.path.insert(0, str(Path(__file__).parent / "models"))
from zoo_configs import tiny_config  # noqa: E402


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


def test_alone_batched_and_chunked(pair):
    check_alone_batched_and_chunked(pair[0], pair[1].engine)


def test_cached_prefix(pair):
    check_cached_prefix(pair[0], pair[1].engine)


def test_language_program(pair):
    @sgl.function
    def qa(s, topic):
        s += "Facts about " + topic + ":"
        s += sgl.gen("fact", max_tokens=8, temperature=0)
        s += " So it is " + sgl.select("kind", choices=["good", "bad", "unknown"])
        s += " Since the year " + sgl.gen("year", regex=r"[0-9]{4}", max_tokens=6, temperature=0)
        forks = s.fork(2)
        for i, f in enumerate(forks):
            f += f" Reason {i}:" + sgl.gen("why", max_tokens=4, temperature=0)
        forks.join()
        s += sgl.gen("more", max_tokens=4, temperature=0)

    one, two = pair
    reference = [qa.run(topic=t, backend=sgl.Runtime.from_engine(one)) for t in ("cats", "rain")]
    states = qa.run_batch([{"topic": "cats"}, {"topic": "rain"}], backend=two)
    for ref, st in zip(reference, states):
        assert (st["fact"], st["kind"], st["year"], st["more"]) == (ref["fact"], ref["kind"], ref["year"], ref["more"])
        assert len(st["year"]) == 4 and st["year"].isdigit()  # the regex held on the tp=2 engine


def test_rank_holds_its_share_of_the_weights(pair):
    one, two = pair
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
