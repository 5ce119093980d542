"""Req: one generation request as the scheduler sees it.

KV ownership of a running request with table row `row`:

    token index:  0 ............ tree_len ............ kv_len ..... len(fill_ids)
                  |<- slots owned |<- slots owned by    |<- no KV yet
                  |   by the tree |   this request      |   (the last sampled token)
                  |   (node locked)                     |

During a step, positions [kv_len, alloc_len) also hold slots of this request (allocated for the
forward, not yet computed); after it kv_len catches up. Release frees [tree_len, alloc_len), so
a step that fails half-way leaks nothing.

`fill_ids` = prompt + output so far. When a request is retracted it gives back its own slots
and its row, and later re-prefills `fill_ids` (its output so far is kept, so it resumes where it
stopped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..cache.radix_cache import TreeNode
from ..forward_batch import InputEmbeds
from ..multimodal.items import MultimodalInputs
from ..sampling.detokenizer import IncrementalDetokenizer
from ..sampling.params import SamplingParams
from ..sampling.stop import StopChecker


@dataclass
class LogprobRequest:
    start: int  # first prompt position with a row (its logprob is None)
    top_k: int
    with_text: bool
    input_values: list[float | None] = field(default_factory=list)
    input_top: list[Any] = field(default_factory=list)
    output_values: list[float] = field(default_factory=list)
    output_top: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class Req:
    rid: str
    input_ids: list[int]
    sampling: SamplingParams
    detokenizer: IncrementalDetokenizer
    stop_checker: StopChecker
    eos_ids: frozenset[int]
    logprob: LogprobRequest | None = None
    stream: bool = False
    output_ids: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    grammar: Any = None  # a constrained-decoding state, or None
    jump_forward_tokens: int = 0  # output tokens the grammar forced (counted by jump_forward.py)
    # embeddings given in place of some prompt tokens' (offsets are prompt positions)
    input_embeds: InputEmbeds | None = None
    media: MultimodalInputs | None = None  # images and videos of the prompt (kept on retraction)
    pool: bool = False  # an embedding request: its result is the pooled vector
    embedding: torch.Tensor | None = None  # (dim,) the pooled vector, once computed
    normalize: bool = False  # pooled vectors: L2-normalize the result (after `dimensions`)
    dimensions: int | None = None  # pooled vectors: keep the first this many (Matryoshka)
    token_type_ids: list[int] | None = None  # per prompt token: its segment (sentence pairs); None: all 0
    channel: Any = None  # where the engine hands this request's results to its caller
    # KV state (owned by the scheduler)
    row: int | None = None
    node: TreeNode | None = None
    tree_len: int = 0
    kv_len: int = 0
    alloc_len: int = 0  # positions with a slot in the table row (>= kv_len; > only mid-step)
    cached_tokens: int = 0  # prompt tokens reused from the cache on first admission
    admitted: bool = False
    # results
    finish_reason: dict[str, Any] | None = None
    text: str = ""  # output text, stop-trimmed at the end
    created: float = field(default_factory=time.perf_counter)
    retractions: int = 0
    delivered: bool = False  # the final result was handed to the caller (set by the engine only)
    # per-step scratch for the sampler
    banned_ids: list[int] = field(default_factory=list)
    first_ids: list[int] | None = None  # token healing: the first output token is one of these

    @property
    def fill_ids(self) -> list[int]:
        return self.input_ids + self.output_ids

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def visible_text(self) -> str:
        """The output text safe to stream now: holds back a tail that may start a stop string."""
        text = self.detokenizer.text
        if self.finished:
            return self.text
        return text[: len(text) - self.stop_checker.holdback(text)] if self.stop_checker.stop else text
