"""Engine results -> OpenAI response objects: choices, logprobs in both of OpenAI's shapes,
finish reasons and usage. Pure functions over result dicts (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def finish_reason(meta: dict[str, Any]) -> str | None:
    reason = meta.get("finish_reason")
    if reason is None:
        return None
    return {"stop": "stop", "length": "length"}.get(reason["type"], reason["type"])


def matched_stop(meta: dict[str, Any]) -> Any:
    reason = meta.get("finish_reason") or {}
    return reason.get("matched") if reason.get("type") == "stop" else None


def usage(results: Sequence[dict[str, Any]], n: int) -> dict[str, Any]:
    """Prompt tokens count once per prompt (results hold n copies of each, in order)."""
    firsts = [r["meta_info"] for r in results[::n]]
    prompt = sum(m["prompt_tokens"] for m in firsts)
    completion = sum(r["meta_info"]["completion_tokens"] for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(m["cached_tokens"] for m in firsts)}}


def _token(text: str | None) -> str:
    return text or ""


def chat_logprobs(meta: dict[str, Any], start: int = 0) -> dict[str, Any]:
    """Chat shape: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} for the
    output tokens from `start` on."""
    rows = meta.get("output_token_logprobs", [])[start:]
    tops = meta.get("output_top_logprobs", [None] * (start + len(rows)))[start:]
    content = []
    for (lp, _tid, text), top in zip(rows, tops):
        content.append({
            "token": _token(text), "logprob": lp, "bytes": list(_token(text).encode()),
            "top_logprobs": [{"token": _token(t), "logprob": v, "bytes": list(_token(t).encode())}
                             for v, _, t in (top or [])],
        })
    return {"content": content}


def completion_logprobs(meta: dict[str, Any], start: int = 0, offset: int = 0) -> dict[str, Any]:
    """Legacy completions shape: parallel lists; `offset` is the text length already sent."""
    rows = meta.get("output_token_logprobs", [])[start:]
    tops = meta.get("output_top_logprobs", [None] * (start + len(rows)))[start:]
    tokens, values, top_dicts, offsets = [], [], [], []
    for (lp, _tid, text), top in zip(rows, tops):
        tokens.append(_token(text))
        values.append(lp)
        top_dicts.append({_token(t): v for v, _, t in (top or [])} or None)
        offsets.append(offset)
        offset += len(_token(text))
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": top_dicts, "text_offset": offsets}


def completion_choice(index: int, text: str, meta: dict[str, Any], with_logprobs: bool) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": completion_logprobs(meta) if with_logprobs else None,
            "finish_reason": finish_reason(meta), "matched_stop": matched_stop(meta)}


def chat_choice(index: int, result: dict[str, Any], with_logprobs: bool) -> dict[str, Any]:
    meta = result["meta_info"]
    return {"index": index, "message": {"role": "assistant", "content": result["text"]},
            "logprobs": chat_logprobs(meta) if with_logprobs else None,
            "finish_reason": finish_reason(meta), "matched_stop": matched_stop(meta)}
