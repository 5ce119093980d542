"""A deterministic mock backend: completions derived from the prompt, fixed select scores."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from sgl.backend.base import BaseBackend
from sgl.chat_template import ChatTemplate, get_chat_template
from sgl.choices import ChoicesDecision, normalized_logprob
from sgl.ir import REGEX_INT, SamplingParams

FAIL_MARK = "<fail>"
FAIL_MID_STREAM_MARK = "<fail-mid-stream>"


def completion_for(prompt: str) -> str:
    """The mock's full (untrimmed) completion of ``prompt``: a tag from its hash, then more."""
    tag = hashlib.md5(prompt.encode()).hexdigest()[:6]
    return f" ans{tag} and more words\nsecond line"


def trim(text: str, params: SamplingParams) -> str:
    """Stop at the earliest stop string (excluded), then keep max_new_tokens words."""
    cut = len(text)
    for s in params.stop or ():
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    text = text[:cut]
    if params.max_new_tokens is not None:
        text = "".join(re.findall(r"\s*\S+", text)[: params.max_new_tokens])
    return text


class MockBackend(BaseBackend):
    def __init__(self, chat_template: str | ChatTemplate = "chatml", scores: dict[str, list[float]] | None = None, stream_delay: float = 0.0) -> None:
        self.template = get_chat_template(chat_template) if isinstance(chat_template, str) else chat_template
        self.scores = scores or {}
        self.stream_delay = stream_delay
        self.calls: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def _log(self, kind: str, payload: Any) -> None:
        with self._lock:
            self.calls.append((kind, payload))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]

    def get_chat_template(self) -> ChatTemplate:
        return self.template

    def _complete(self, prompt: str, params: SamplingParams) -> tuple[str, dict]:
        if FAIL_MARK in prompt:
            raise RuntimeError("mock engine failure")
        params = params.resolve_dtype()
        full = "42 \n" if params.regex == REGEX_INT else completion_for(prompt)
        text = trim(full, params)
        meta = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()), "params": params}
        return text, meta

    def generate(self, state: Any, sampling_params: SamplingParams) -> tuple[Any, Any]:
        self._log("generate", state.text_)
        if (sampling_params.n or 1) > 1:
            outs = [self._complete(state.text_ + f"#{i}", sampling_params) for i in range(sampling_params.n)]
            return [t for t, _ in outs], [m for _, m in outs]
        return self._complete(state.text_, sampling_params)

    def generate_stream(self, state: Any, sampling_params: SamplingParams):
        self._log("generate_stream", state.text_)
        text, meta = self._complete(state.text_, sampling_params)
        for i in range(0, len(text), 3):
            time.sleep(self.stream_delay)
            yield text[i : i + 3], meta
            if FAIL_MID_STREAM_MARK in state.text_:
                raise RuntimeError("mock stream broke")

    def _rows(self, choice: str) -> list[list[Any]]:
        lps = self.scores.get(choice, [-1.0] * (len(choice) // 3 + 1))
        return [[lp, i, None] for i, lp in enumerate(lps)]

    def select(self, state: Any, choices: Sequence[str], temperature: float, choices_method: Any) -> ChoicesDecision:
        self._log("select", (state.text_, tuple(choices)))
        if FAIL_MARK in state.text_:
            raise RuntimeError("mock engine failure")
        rows = [self._rows(c) for c in choices]
        uncond = [[[None, 0, None]] + [[-2.0, i, None] for i in range(1, len(r))] for r in rows]
        return choices_method(
            choices=list(choices),
            normalized_prompt_logprobs=[normalized_logprob(r) for r in rows],
            input_token_logprobs=rows,
            output_token_logprobs=[[] for _ in choices],
            unconditional_token_logprobs=uncond if choices_method.requires_unconditional_logprobs else None,
        )

    def commit_lazy_operations(self, state: Any) -> None:
        self._log("commit", state.text_)

    def cache_prefix(self, prefix_str: str) -> None:
        self._log("cache", prefix_str)

    def flush_cache(self) -> bool:
        self._log("flush", None)
        return True

    def get_server_info(self) -> dict:
        return {"backend": "mock"}
