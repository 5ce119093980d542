"""Result dicts in SGLang's shape, built from a request's state."""

from __future__ import annotations

import time
from typing import Any

from .layers.pooler import finish_vector
from .sampling.logprobs import rows, top_rows
from .scheduler.request import Req


def build_result(req: Req, tokenizer: Any) -> dict[str, Any]:
    """{"text", "output_ids", "meta_info"}; while a request runs, `text` is what may be streamed."""
    meta: dict[str, Any] = {
        "id": req.rid,
        "prompt_tokens": len(req.input_ids),
        "completion_tokens": len(req.output_ids),
        "cached_tokens": req.cached_tokens,
        "finish_reason": req.finish_reason,
        "e2e_latency": time.perf_counter() - req.created,
    }
    lp = req.logprob
    if lp is not None:
        input_ids = req.input_ids[lp.start : lp.start + len(lp.input_values)]
        meta["input_token_logprobs"] = rows(lp.input_values, input_ids, tokenizer, lp.with_text)
        meta["output_token_logprobs"] = rows(lp.output_values, req.output_ids, tokenizer, lp.with_text)
        meta["output_token_logprobs_length"] = len(meta["output_token_logprobs"])
        if lp.top_k:
            meta["input_top_logprobs"] = top_rows(lp.input_top, tokenizer, lp.with_text)
            meta["output_top_logprobs"] = top_rows(lp.output_top, tokenizer, lp.with_text)
    if req.grammar is not None and req.jump_forward_tokens:
        meta["jump_forward_tokens"] = req.jump_forward_tokens
    if req.pool:
        embedding = req.embedding
        if embedding is not None:
            embedding = finish_vector(embedding, req.normalize, req.dimensions).tolist()
        return {"embedding": embedding, "meta_info": meta}
    return {"text": req.visible_text(), "output_ids": list(req.output_ids), "meta_info": meta}


# NOTE: the same keys as lang/stream_meta.py INCREMENTAL_KEYS (the language's side).
STREAM_INCREMENTAL_KEYS = ("output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs")


class IncrementalStream:
    """Turns a request's cumulative result dicts into the chunks SGLang streams: `text` and
    `output_ids` stay cumulative; under STREAM_INCREMENTAL_KEYS each chunk carries only the rows
    not sent before, and `output_token_logprobs_length` stays the count of rows so far.

    NOTE: offsets count what was *sent*, so results that were skipped (a consumer that coalesces
    updates, as the server's stream merger does) lose no row: the next chunk carries them.
    """

    def __init__(self) -> None:
        self._sent: dict[str, int] = {}

    def chunk(self, result: dict[str, Any]) -> dict[str, Any]:
        meta = result.get("meta_info")
        if not isinstance(meta, dict) or not any(k in meta for k in STREAM_INCREMENTAL_KEYS):
            return result
        meta = dict(meta)
        for key in STREAM_INCREMENTAL_KEYS:
            value = meta.get(key)
            if isinstance(value, list):
                start = self._sent.get(key, 0)
                meta[key] = value[start:]
                self._sent[key] = len(value)
        return {**result, "meta_info": meta}
