"""What the tensor-parallel tests compare: one prompt, a batch (some prompts chunked) and a
cached prefix through a tp=1 engine and a tp=2 one on the same checkpoint, with the same greedy
tokens and prompt/output logprobs within 1e-4 (float32)."""

from __future__ import annotations

import random
from typing import Any

import torch

GREEDY = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
ARGS = dict(dtype="float32", max_total_tokens=4096, context_length=512, chunked_prefill_size=32)


def prompts(n: int, lo: int, hi: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 40000) for _ in range(rng.randrange(lo, hi))] for _ in range(n)]


def same(a: dict, b: dict) -> None:
    assert a["output_ids"] == b["output_ids"]
    for key in ("input_token_logprobs", "output_token_logprobs"):
        la = torch.tensor([r[0] for r in a["meta_info"][key] if r[0] is not None])
        lb = torch.tensor([r[0] for r in b["meta_info"][key] if r[0] is not None])
        torch.testing.assert_close(lb, la, atol=1e-4, rtol=0)


def both(one: Any, two: Any, ids: Any, logprob_start_len: int = 0) -> tuple[Any, Any]:
    """(tp=1 result, tp=2 result); one and two are Engines."""
    kw = dict(sampling_params=GREEDY, return_logprob=True, logprob_start_len=logprob_start_len)
    return one.generate(input_ids=ids, **kw), two.generate(input_ids=ids, **kw)


def check_alone_batched_and_chunked(one: Any, two: Any) -> None:
    same(*both(one, two, prompts(1, 5, 20, 0)[0]))
    batch = prompts(6, 5, 90, 1)  # prompts over 32 tokens go in chunks of 32
    assert any(len(p) > 32 for p in batch)
    for a, b in zip(*both(one, two, batch)):
        same(a, b)


def check_cached_prefix(one: Any, two: Any) -> None:
    prefix = prompts(1, 40, 41, 2)[0]
    first, second = prefix + [11, 12, 13], prefix + [21, 22]
    both(one, two, first)
    a, b = both(one, two, second, logprob_start_len=len(second) - 1)  # prompt logprobs of the new tokens only
    same(a, b)
    assert b["meta_info"]["cached_tokens"] >= 40 and a["meta_info"]["cached_tokens"] >= 40
    two.check_kv()


def weight_bytes(engine: Any) -> int:
    model = engine._scheduler.runner.model
    return sum(p.numel() * p.element_size() for p in model.parameters())
