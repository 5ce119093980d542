"""``sglang.lang.choices``: our choice methods (``sgl.choices``)."""

from __future__ import annotations

import sgl.choices as _target
from sgl.choices import (
    ChoicesDecision,
    ChoicesSamplingMethod,
    GreedyTokenSelection,
    TokenLengthNormalized,
    UnconditionalLikelihoodNormalized,
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)
from sgl.lang._alias import forward

__all__ = [
    "ChoicesDecision", "ChoicesSamplingMethod", "GreedyTokenSelection", "TokenLengthNormalized",
    "UnconditionalLikelihoodNormalized", "greedy_token_selection", "token_length_normalized",
    "unconditional_likelihood_normalized",
]  # fmt: skip

__getattr__, __dir__ = forward(_target, globals())
