"""SGLang's incremental streamed meta_info: the server's slicer (runtime/results.py), the
frontend's folding (sgl.stream_meta) and `text_async_iter(var, return_meta_data=True)`, which
must not lose the rows of chunks that arrive between two reads or add no text."""

from __future__ import annotations

import asyncio
import threading

import sgl
from sgl.backend.base import BaseBackend
from sgl.chat_template import get_chat_template
from sgl.runtime.results import STREAM_INCREMENTAL_KEYS, IncrementalStream
from sgl.stream_meta import INCREMENTAL_KEYS, accumulate


def _result(n: int, text: str) -> dict:
    rows = [[-0.1 * i, 100 + i, None] for i in range(n)]
    return {"text": text, "output_ids": [r[1] for r in rows],
            "meta_info": {"completion_tokens": n, "output_token_logprobs": rows,
                          "output_token_logprobs_length": n, "input_token_logprobs": [[None, 1, None]]}}


def test_the_two_sides_agree_on_the_incremental_keys():
    assert STREAM_INCREMENTAL_KEYS == INCREMENTAL_KEYS


def test_slicer_sends_each_row_once_even_when_results_are_skipped():
    inc = IncrementalStream()
    # results 2 and 4 were coalesced away by the consumer: their rows come with the next chunk
    chunks = [inc.chunk(_result(n, "x" * n)) for n in (1, 3, 5, 5)]
    assert [len(c["meta_info"]["output_token_logprobs"]) for c in chunks] == [1, 2, 2, 0]
    assert [c["meta_info"]["output_token_logprobs_length"] for c in chunks] == [1, 3, 5, 5]
    assert [r[1] for c in chunks for r in c["meta_info"]["output_token_logprobs"]] == [100, 101, 102, 103, 104]
    assert chunks[-1]["text"] == "xxxxx"  # text stays cumulative
    assert all(len(c["meta_info"]["input_token_logprobs"]) == 1 for c in chunks)
    plain = {"text": "a", "meta_info": {"completion_tokens": 1}}
    assert IncrementalStream().chunk(plain) is plain  # no logprobs asked: untouched


def test_accumulate_extends_rows_and_keeps_the_latest_of_the_rest():
    a, b = _result(2, "ab"), _result(3, "abc")
    b["meta_info"]["output_token_logprobs"] = b["meta_info"]["output_token_logprobs"][2:]
    total = accumulate(accumulate(None, a["meta_info"]), b["meta_info"])
    assert [r[1] for r in total["output_token_logprobs"]] == [100, 101, 102]
    assert total["completion_tokens"] == 3
    assert len(a["meta_info"]["output_token_logprobs"]) == 2  # the chunks are not touched


class ChunkBackend(BaseBackend):
    """Streams fixed chunks: one with no text, and a last one with rows but no text (a stop
    token). `gate` holds the stream after the first chunk until the reader has read it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.chunks = [("Hel", 1), ("", 2), ("lo", 3), (" wo", 4), ("rld", 5), ("", 6)]

    def get_chat_template(self):
        return get_chat_template("default")

    def generate_stream(self, state, sampling_params):
        sent = 0
        for i, (piece, n) in enumerate(self.chunks):
            meta = _result(n, "")["meta_info"]
            meta["output_token_logprobs"] = meta["output_token_logprobs"][sent:]
            sent = n
            yield piece, meta
            if i == 0:
                self.gate.wait(10)


def test_text_async_iter_merges_chunks_so_no_row_is_lost():
    backend = ChunkBackend()

    @sgl.function
    def f(s):
        s += "Say:" + sgl.gen("out", max_tokens=8, return_logprob=True)

    state = f.run(backend=backend, stream=True)

    async def read() -> list[tuple[str, dict]]:
        out = []
        async for piece, meta in state.text_async_iter("out", return_meta_data=True):
            out.append((piece, meta))
            backend.gate.set()
        return out

    chunks = asyncio.run(read())
    assert "".join(p for p, _ in chunks) == "Hello world" == state["out"]
    assert [r[1] for _, m in chunks for r in m["output_token_logprobs"]] == [100 + i for i in range(6)]
    assert chunks[-1][1]["output_token_logprobs_length"] == 6
    assert all(p for p, _ in chunks[:-1]) and chunks[0] == ("Hel", chunks[0][1])
    assert [r[1] for r in state.get_meta_info("out")["output_token_logprobs"]] == [100 + i for i in range(6)]


def test_endpoint_side_normalizes_cumulative_and_incremental_servers():
    from sgl.stream_meta import IncrementalMeta

    cumulative = [_result(n, "")["meta_info"] for n in (1, 3, 4)]  # SGLang's default mode
    legacy = [dict(m) for m in cumulative]
    for m in legacy:
        del m["output_token_logprobs_length"]  # an older server: rows cumulative, no length
    sliced = IncrementalStream()
    ours = [sliced.chunk({"meta_info": m})["meta_info"] for m in cumulative]
    for metas in (cumulative, legacy, ours):
        norm = IncrementalMeta()
        out = [norm.chunk(m) for m in metas]
        assert [r[1] for m in out for r in m["output_token_logprobs"]] == [100, 101, 102, 103]
        assert [m["output_token_logprobs_length"] for m in out] == [1, 3, 4]
    assert IncrementalMeta().chunk(ours[1]) is ours[1]  # already incremental: passed as is
