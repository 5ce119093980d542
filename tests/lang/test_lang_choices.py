"""The three choice methods on fixed logprobs, with decisions computed by hand."""

from __future__ import annotations

import pytest
import sgl
from sgl.choices import ChoicesDecision, normalized_logprob

CHOICES = ["organ", "organism", "antidisestablishmentarianism"]

# Tokens: organ = [organ]; organism = [organ, ism]; antidis... = [ant, id, is, establish,
# ment, arian, ism]. "organ" is the first token of both short options, so both get the same
# conditional logprob for it (-1.0), as a real model would give.
COND = [
    [-1.0],
    [-1.0, -1.5],
    [-2.0, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5],
]
# Unconditional: each choice's tokens scored alone; the first row has no logprob (null -> 0).
UNCOND = [
    [None],
    [None, -4.0],
    [None, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0],
]


def rows(lps):
    return [[lp, i, None] for i, lp in enumerate(lps)]


def call(method, cond=COND, uncond=UNCOND, choices=CHOICES) -> ChoicesDecision:
    inputs = [rows(c) for c in cond]
    return method(
        choices=choices,
        normalized_prompt_logprobs=[normalized_logprob(r) for r in inputs],
        input_token_logprobs=inputs,
        output_token_logprobs=[[] for _ in choices],
        unconditional_token_logprobs=[rows(u) for u in uncond],
    )


def test_token_length_normalized_picks_highest_mean():
    # means: organ -1.0; organism (-1.0 - 1.5) / 2 = -1.25;
    #        antidis... (-2.0 + 6 * -0.5) / 7 = -5.0 / 7 = -0.714  -> highest
    d = call(sgl.token_length_normalized)
    assert d.decision == "antidisestablishmentarianism"
    assert d.meta_info["normalized_prompt_logprobs"] == pytest.approx([-1.0, -1.25, -5.0 / 7])
    assert len(d.meta_info["input_token_logprobs"]) == 3


def test_greedy_token_selection_compares_position_by_position():
    # matrix (short rows padded with their own mean), width 7:
    #   organ     [-1.0, -1.0 (pad), ...]
    #   organism  [-1.0, -1.5, -1.25 (pad), ...]
    #   antidis   [-2.0, -0.5, ...]
    # position 0: max is -1.0 -> keep {organ, organism}; position 1: -1.0 > -1.5 -> organ
    d = call(sgl.greedy_token_selection)
    assert d.decision == "organ"
    m = d.meta_info["greedy_logprob_matrix"]
    assert m[0] == [-1.0] * 7
    assert m[1] == [-1.0, -1.5] + [-1.25] * 5


def test_unconditional_likelihood_normalized_subtracts_unconditional():
    # mean of (conditional - unconditional), a null unconditional logprob counting as 0:
    #   organ     [-1.0 - 0] -> -1.0
    #   organism  [-1.0 - 0, -1.5 - (-4.0)] = [-1.0, 2.5] -> 0.75   -> highest
    #   antidis   [-2.0 - 0] + 6 * [-0.5 - (-1.0)] = [-2.0, 0.5 x 6] -> 1.0 / 7 = 0.143
    d = call(sgl.unconditional_likelihood_normalized)
    assert d.decision == "organism"
    assert d.meta_info["normalized_unconditional_prompt_logprobs"] == pytest.approx([-1.0, 0.75, 1.0 / 7])


def test_unconditional_requires_unconditional_logprobs():
    assert sgl.unconditional_likelihood_normalized.requires_unconditional_logprobs
    assert not sgl.token_length_normalized.requires_unconditional_logprobs
    with pytest.raises(ValueError, match="unconditional_token_logprobs"):
        sgl.unconditional_likelihood_normalized(
            choices=["a"], normalized_prompt_logprobs=[-1.0], input_token_logprobs=[rows([-1.0])],
            output_token_logprobs=[[]],
        )  # fmt: skip


def test_ties_go_to_lowest_index():
    same = [[-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0]]
    for method in (sgl.token_length_normalized, sgl.greedy_token_selection):
        assert call(method, cond=same, uncond=[[None, -1.0]] * 3, choices=["a", "b", "c"]).decision == "a"


def test_normalized_logprob_skips_null_rows():
    assert normalized_logprob([[None, 1, None], [-1.0, 2, None], [-3.0, 3, None]]) == -2.0
