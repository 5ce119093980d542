"""Streamed logprobs on `sgl.Runtime` (the in-process engine), SGLang's incremental semantics:
each chunk read through `text_async_iter(var, return_meta_data=True)` carries the rows of its new
tokens; `Runtime.endpoint` describes the model as SGLang's does. The same over HTTP:
tests/server/test_server_stream_logprobs.py."""

from __future__ import annotations

import asyncio

import sgl
from stream_checks import check_incremental


@sgl.function
def colors(s):
    s += sgl.user("Name three colors, separated by commas.")
    s += sgl.assistant(sgl.gen("answer", max_tokens=8, return_logprob=True, top_logprobs_num=2,
                               return_text_in_logprobs=True))


async def _chunks(state) -> list[tuple[str, dict]]:
    return [(piece, meta) async for piece, meta in state.text_async_iter("answer", return_meta_data=True)]


def test_streamed_rows_concatenate_to_the_non_streamed_ones(runtime, engine):
    full = colors.run(backend=runtime, temperature=0)
    assert full.error() is None
    engine.flush_cache()  # the stream computes its prompt the same way
    state = colors.run(backend=runtime, temperature=0, stream=True)
    chunks = asyncio.run(_chunks(state))
    assert state.error() is None
    assert "".join(p for p, _ in chunks) == full["answer"] == state["answer"]
    full_meta = full.get_meta_info("answer")
    check_incremental([m for _, m in chunks], full_meta)
    # after the stream, the variable's meta_info holds all rows, as a non-streamed gen's does
    folded = state.get_meta_info("answer")
    assert [r[1] for r in folded["output_token_logprobs"]] == [r[1] for r in full_meta["output_token_logprobs"]]
    assert folded["output_token_logprobs_length"] == full_meta["completion_tokens"]
    assert len(folded["input_token_logprobs"]) == len(full_meta["input_token_logprobs"])


def test_runtime_endpoint_describes_the_in_process_model(runtime, engine):
    ep = runtime.endpoint
    assert ep.get_model_name() == str(engine.model_path) == ep.get_model_info()["model_path"]
    info = ep.get_model_info()
    assert info["is_generation"] is True and info["vocab_size"] == engine.model_config.vocab_size
    assert info["chat_template"] == engine.tokenizer.chat_template
    assert ep.get_server_info().keys() == engine.get_server_info().keys()
    # how SGLang programs reach it
    sgl.set_default_backend(runtime)
    try:
        assert sgl.global_config.default_backend.endpoint.get_model_name() == str(engine.model_path)
    finally:
        sgl.global_config.default_backend = None
