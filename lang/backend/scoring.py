"""Token spans for scoring ``select`` choices without a boundary bias (SGLang #1257, #2873).

The prompt and a choice may tokenize together across their boundary: "is " + "Paris" becomes
[..., "is", " Paris"], not [..., "is", " ", "Paris"]. Scoring the choice from the prompt's
own token count would then drop or split tokens. Instead, tokenize prompt + choice as a whole
and score from the longest common token prefix with the tokenized prompt::

    prompt ids:          p0 p1 ... pk-1 pk          (pk = " ")
    prompt+choice ids:   p0 p1 ... pk-1 c0 c1 ...   (c0 = " Paris")
                                        ^ boundary = k: the first id that differs
    scored:                             c0 c1 ...   each conditioned on everything before it

so every choice is scored over exactly the tokens where it differs from the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChoiceSpan:
    input_ids: list[int]  # prompt + choice, tokenized as a whole
    boundary: int  # index of the first scored token

    @property
    def choice_ids(self) -> list[int]:
        return self.input_ids[self.boundary :]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids as the engine makes them from text (the tokenizer's default special tokens)."""
    return list(tokenizer.encode(text))


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def choice_spans(tokenizer: Any, prompt: str, choices: Sequence[str]) -> list[ChoiceSpan]:
    prompt_ids = encode(tokenizer, prompt)
    spans = []
    for c in choices:
        ids = encode(tokenizer, prompt + c)
        # NOTE: at least one scored token, even if the choice vanished into the prompt's tokens
        boundary = min(common_prefix_len(prompt_ids, ids), len(ids) - 1)
        spans.append(ChoiceSpan(ids, boundary))
    return spans


def score_rows(input_rows: Sequence[Sequence[Any]], start: int, span: ChoiceSpan, expanded: int = 0) -> list[list[Any]]:
    """The rows of the choice's own tokens, from rows that cover positions [start, len(ids)).
    `expanded`: tokens the engine added before the choice (each image's placeholder becomes
    its rows, so the engine's positions from the image on are that much further)."""
    rows = [list(r) for r in input_rows[span.boundary + expanded - start :]]
    if len(rows) != len(span.choice_ids):
        raise RuntimeError(
            f"engine returned {len(input_rows)} logprob rows from position {start}; expected "
            f"{len(span.input_ids) - start} for a {len(span.input_ids)}-token input"
        )
    return rows


def select_by_logprobs(generate: Callable[[dict[str, Any]], list[dict[str, Any]]], tokenizer: Any,
                       prompt: str, choices: Sequence[str], method: Any, image_data: list[str] | None = None) -> Any:
    """Scores every choice as a continuation of `prompt` and lets `method` decide.

    `generate` takes a native /generate body (list input) and returns its results. All choices go
    in ONE prefill-only call, sharing the prompt's cached prefix; rows start one token before the
    earliest boundary (that row has no logprob). Methods that need unconditional logprobs get a
    second call on the choice tokens alone. `image_data`: the prompt's images (each choice's
    input carries them; they are cached once for all).
    """
    from sgl.choices import normalized_logprob

    spans = choice_spans(tokenizer, prompt, choices)
    start = max(min(sp.boundary for sp in spans) - 1, 0)
    common = {"return_logprob": True, "return_text_in_logprobs": True}
    media = {"image_data": [list(image_data) for _ in spans]} if image_data else {}
    outs = generate({**common, "input_ids": [sp.input_ids for sp in spans], "logprob_start_len": start,
                     "sampling_params": {"max_new_tokens": 0, "temperature": 0.0}, **media})
    # NOTE: with images, `start` (a position of the caller's tokens, before any image ends)
    # is the same token in the engine's expanded prompt only if no image comes before it;
    # rows then start earlier there, and the choice's rows are found past the expansion.
    rows = [score_rows(o["meta_info"]["input_token_logprobs"], start, sp,
                       o["meta_info"]["prompt_tokens"] - len(sp.input_ids) if image_data else 0)
            for o, sp in zip(outs, spans)]
    unconditional = None
    if method.requires_unconditional_logprobs:
        outs_u = generate({**common, "input_ids": [sp.choice_ids for sp in spans], "logprob_start_len": 0,
                           "sampling_params": {"max_new_tokens": 0}})
        unconditional = [o["meta_info"]["input_token_logprobs"] for o in outs_u]
    return method(
        choices=list(choices),
        normalized_prompt_logprobs=[normalized_logprob(r) for r in rows],
        input_token_logprobs=rows,
        output_token_logprobs=[o["meta_info"].get("output_token_logprobs", []) for o in outs],
        unconditional_token_logprobs=unconditional,
    )
