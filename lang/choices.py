"""Choice methods for ``select``: how per-token logprobs of each choice become a decision.

A method is a callable object (users may write their own) called as::

    method(*, choices, normalized_prompt_logprobs, input_token_logprobs,
           output_token_logprobs, unconditional_token_logprobs=None) -> ChoicesDecision

``input_token_logprobs[i]`` holds the rows ``[logprob, token_id, text]`` of choice ``i``'s own
tokens (the tokens that differ from the prompt), scored as a continuation of the prompt.
``unconditional_token_logprobs[i]`` holds the same tokens scored alone; its first row's logprob
is null (nothing precedes it) and counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Rows = Sequence[Sequence[Any]]  # rows of [logprob, token_id, text]


@dataclass(frozen=True)
class ChoicesDecision:
    decision: str
    meta_info: dict[str, Any] = field(default_factory=dict)


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the lowest index."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("-inf")


def _logprobs(rows: Rows) -> list[float]:
    return [float(r[0]) for r in rows if r[0] is not None]


def normalized_logprob(rows: Rows) -> float:
    """Mean logprob of a choice's tokens (null rows skipped)."""
    return _mean(_logprobs(rows))


class ChoicesSamplingMethod:
    """Base class; subclasses implement ``__call__``."""

    requires_unconditional_logprobs: bool = False

    def __call__(
        self,
        *,
        choices: Sequence[str],
        normalized_prompt_logprobs: Sequence[float],
        input_token_logprobs: Sequence[Rows],
        output_token_logprobs: Sequence[Rows],
        unconditional_token_logprobs: Sequence[Rows] | None = None,
    ) -> ChoicesDecision:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


def _base_meta(normalized, inputs, outputs) -> dict[str, Any]:
    return {
        "normalized_prompt_logprobs": list(normalized),
        "input_token_logprobs": list(inputs),
        "output_token_logprobs": list(outputs),
    }


class TokenLengthNormalized(ChoicesSamplingMethod):
    """The choice with the highest mean token logprob."""

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs,
                 output_token_logprobs, unconditional_token_logprobs=None) -> ChoicesDecision:  # fmt: skip
        best = _argmax(normalized_prompt_logprobs)
        meta = _base_meta(normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs)
        return ChoicesDecision(choices[best], meta)


class GreedyTokenSelection(ChoicesSamplingMethod):
    """Compare token by token, keeping the choices with the highest logprob at each position.

    A shorter choice is padded with its own mean logprob, so a choice that is a prefix of a
    longer one competes on equal length. Remaining ties go to the lowest index.
    """

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs,
                 output_token_logprobs, unconditional_token_logprobs=None) -> ChoicesDecision:  # fmt: skip
        per_choice = [_logprobs(rows) for rows in input_token_logprobs]
        width = max(len(lp) for lp in per_choice)
        # matrix: (num_choices, width), short rows padded with their mean
        matrix = [lp + [_mean(lp)] * (width - len(lp)) for lp in per_choice]
        remaining = list(range(len(choices)))
        for j in range(width):
            top = max(matrix[i][j] for i in remaining)
            remaining = [i for i in remaining if matrix[i][j] == top]
            if len(remaining) == 1:
                break
        meta = _base_meta(normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs)
        meta["greedy_logprob_matrix"] = matrix
        return ChoicesDecision(choices[remaining[0]], meta)


class UnconditionalLikelihoodNormalized(ChoicesSamplingMethod):
    """The choice with the highest mean of (conditional - unconditional) token logprob."""

    requires_unconditional_logprobs = True

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs,
                 output_token_logprobs, unconditional_token_logprobs=None) -> ChoicesDecision:  # fmt: skip
        if unconditional_token_logprobs is None:
            raise ValueError(
                "unconditional_likelihood_normalized needs unconditional_token_logprobs; "
                "the backend must score each choice's tokens alone."
            )
        scores = []
        for cond, uncond in zip(input_token_logprobs, unconditional_token_logprobs):
            if len(cond) != len(uncond):
                raise ValueError(
                    f"conditional ({len(cond)}) and unconditional ({len(uncond)}) rows of a "
                    "choice must cover the same tokens"
                )
            # NOTE: a null logprob (the unconditional first token) counts as 0.
            diffs = [(c[0] or 0.0) - (u[0] or 0.0) for c, u in zip(cond, uncond)]
            scores.append(_mean(diffs))
        best = _argmax(scores)
        meta = _base_meta(normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs)
        meta["unconditional_token_logprobs"] = list(unconditional_token_logprobs)
        meta["normalized_unconditional_prompt_logprobs"] = scores
        return ChoicesDecision(choices[best], meta)


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()
