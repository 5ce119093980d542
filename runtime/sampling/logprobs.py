"""Logprob rows in SGLang's shape: [logprob, token_id, text | None]."""

from __future__ import annotations

from typing import Any

import torch


def token_logprobs(logprobs: torch.Tensor, token_ids: torch.Tensor) -> list[float]:
    """logprobs (rows, vocab), token_ids (rows,) -> the chosen tokens' logprobs."""
    return logprobs.gather(1, token_ids[:, None])[:, 0].tolist()


def top_logprobs(logprobs: torch.Tensor, k: int) -> list[list[tuple[float, int]]]:
    """(rows, vocab) -> per row the k most likely (logprob, token_id), best first."""
    if k <= 0:
        return [[] for _ in range(logprobs.shape[0])]
    vals, ids = logprobs.topk(k, dim=-1)
    return [list(zip(v, i)) for v, i in zip(vals.tolist(), ids.tolist())]


def rows(values: list[float | None], ids: list[int], tokenizer: Any, with_text: bool) -> list[list[Any]]:
    texts = [tokenizer.decode([t]) for t in ids] if with_text else [None] * len(ids)
    return [[v, t, s] for v, t, s in zip(values, ids, texts)]


def top_rows(tops: list[list[tuple[float, int]] | None], tokenizer: Any, with_text: bool) -> list[Any]:
    out: list[Any] = []
    for entry in tops:
        if entry is None:
            out.append(None)
        else:
            out.append([[v, t, tokenizer.decode([t]) if with_text else None] for v, t in entry])
    return out
