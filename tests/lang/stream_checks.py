"""Checks shared by the streamed-logprob tests (tests/lang and tests/server): a stream's chunks
follow SGLang's incremental semantics and add up to the non-streamed result."""

from __future__ import annotations

from typing import Any

import pytest


def check_incremental(metas: list[dict[str, Any]], full: dict[str, Any], top: bool = True) -> None:
    """``metas``: each streamed chunk's meta_info, in order; ``full``: the non-streamed meta_info
    of the same request (greedy, same cache state)."""
    rows: list[list[Any]] = []
    tops: list[Any] = []
    completion = 0
    for m in metas:
        new = m["output_token_logprobs"]
        rows += new
        tops += m.get("output_top_logprobs", [])
        # the length counts all rows so far and equals completion_tokens so far
        assert m["output_token_logprobs_length"] == len(rows) == m["completion_tokens"]
        assert m["completion_tokens"] >= completion
        completion = m["completion_tokens"]
    assert sum(1 for m in metas if m["output_token_logprobs"]) > 1, "the rows did not arrive in pieces"
    assert completion == full["completion_tokens"] == full["output_token_logprobs_length"]
    assert [r[1:] for r in rows] == [r[1:] for r in full["output_token_logprobs"]]  # ids and texts
    assert [r[0] for r in rows] == pytest.approx([r[0] for r in full["output_token_logprobs"]], abs=1e-4)
    if top:
        assert len(tops) == len(full["output_top_logprobs"]) == len(rows)
        assert [[t[1] for t in row] for row in tops] == [[t[1] for t in row] for row in full["output_top_logprobs"]]
