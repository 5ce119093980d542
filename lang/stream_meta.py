"""Streamed meta_info with SGLang's incremental semantics, as the frontend reads it.

A streamed chunk's meta_info carries, under the keys below, only the rows of the tokens new in
that chunk; ``output_token_logprobs_length`` is the number of output rows so far (equal to
``completion_tokens``), so ``length - len(rows)`` is where the chunk's rows start. Every other
key (``completion_tokens``, ``finish_reason``, ``input_token_logprobs``, ...) is the request's
state at that chunk.
"""

from __future__ import annotations

from typing import Any

# NOTE: the same keys as runtime/results.py STREAM_INCREMENTAL_KEYS (the server side, which must
# not import the language); tests/lang/test_lang_stream_meta.py checks that they agree.
INCREMENTAL_KEYS = ("output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs")


def accumulate(total: dict[str, Any] | None, chunk: dict[str, Any] | None) -> dict[str, Any] | None:
    """Folds one chunk's meta_info into ``total`` (mutated and returned; a new dict when None):
    incremental lists are extended, every other key takes the chunk's value."""
    if chunk is None:
        return total
    if total is None:
        total = {}
    for key, value in chunk.items():
        if key in INCREMENTAL_KEYS and isinstance(value, list):
            total.setdefault(key, []).extend(value)
        else:
            total[key] = value
    return total


def has_rows(meta: dict[str, Any] | None) -> bool:
    """Whether a chunk's meta_info carries any incremental row."""
    return bool(meta) and any(meta.get(k) for k in INCREMENTAL_KEYS)


class IncrementalMeta:
    """Makes a server's streamed meta_info incremental whichever way it sends rows: ours and
    SGLang's ``--incremental-streaming-output`` send the new rows, SGLang's default mode all rows
    so far. ``output_token_logprobs_length`` says which (the rows start at ``length - len(rows)``);
    a chunk without it is taken as cumulative (older servers). Rows already seen are dropped."""

    def __init__(self) -> None:
        self.seen = 0  # output rows passed on so far

    def chunk(self, meta: dict[str, Any]) -> dict[str, Any]:
        rows = meta.get("output_token_logprobs")
        if not isinstance(rows, list):
            return meta
        length = meta.get("output_token_logprobs_length", len(rows))
        skip = max(self.seen - (length - len(rows)), 0)
        self.seen = max(self.seen, length)
        if skip == 0 and "output_token_logprobs_length" in meta:
            return meta
        out = dict(meta)
        for key in INCREMENTAL_KEYS:
            if isinstance(out.get(key), list):
                out[key] = out[key][skip:]
        out["output_token_logprobs_length"] = length
        return out
