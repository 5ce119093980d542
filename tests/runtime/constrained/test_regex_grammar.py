"""Regex, dtype and choices grammars walked token by token with the real tokenizer."""

from __future__ import annotations

import random
import re

import pytest
import torch
from sgl.runtime.constrained import (
    DTYPE_REGEX,
    Grammar,
    GrammarStateError,
    apply_grammar_masks,
    choices_regex,
)

IPV4 = r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
ISO_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
PHONE = r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}"
WORDS = r"(apple|banana|cherry pie)"


def random_walk(grammar: Grammar, rng: random.Random, max_steps: int = 64) -> list[int]:
    """Sample uniformly among allowed tokens (EOS included) until EOS or is_finished()."""
    eos = min(grammar.compiled.info.eos_token_ids)
    for _ in range(max_steps):
        if grammar.is_finished():
            break
        allowed = grammar.allowed_token_ids()
        assert allowed, "a live grammar always allows something"
        tok = rng.choice(allowed)
        grammar.advance(tok)
        if tok == eos:
            break
    return list(grammar.tokens)


@pytest.mark.parametrize("regex", [IPV4, ISO_DATE, PHONE, WORDS])
def test_random_paths_match_the_regex(compiler, info, regex):
    compiled = compiler.compile("regex", regex)
    rng = random.Random(0)
    for _ in range(20):
        g = Grammar(compiled)
        tokens = random_walk(g, rng)
        text = info.decode_bytes(tokens).decode()
        if g.accepts_eos():
            assert re.fullmatch(regex, text), text
        else:  # ran out of steps: still a prefix of some match
            assert g.allowed_token_ids()


def test_greedy_path_with_masked_logits(compiler, info):
    """apply_grammar_masks + argmax over random logits always yields a full match."""
    compiled = compiler.compile("regex", PHONE)
    gen = torch.Generator().manual_seed(0)
    g = Grammar(compiled)
    eos = min(info.eos_token_ids)
    for _ in range(40):
        logits = torch.randn(1, info.vocab_size, generator=gen)
        apply_grammar_masks([g], logits)
        tok = int(logits.argmax())
        g.advance(tok)
        if tok == eos:
            break
    assert g.terminated
    assert re.fullmatch(PHONE, info.decode_bytes(g.tokens).decode())


@pytest.mark.parametrize("dtype,good,bad", [
    ("int", ["42", "-7", "+3 \n"], ["4.2", "x"]),
    ("float", ["3.14", "-.5", "7"], ["1e3", "abc"]),
    ("str", ['"hello world"', '""'], ["hello", '"a"b"']),
    ("bool", ["True", "False"], ["true", "Tru"]),
])
def test_dtype_regexes(compiler, info, dtype, good, bad):
    compiled = compiler.compile("regex", DTYPE_REGEX[dtype])
    for text, expected in [(t, True) for t in good] + [(t, False) for t in bad]:
        g = Grammar(compiled)
        ok = all(g.accepts_token(t) and (g.advance(t) or True) for t in info.encode(text))
        assert (ok and g.accepts_eos()) == expected, (dtype, text)


def test_choices_are_escaped_and_exclusive(compiler, info):
    choices = ["a+b", "(c)", "d.e", "naïve"]
    compiled = compiler.compile("regex", choices_regex(choices))
    for c in choices:
        g = Grammar(compiled)
        for t in info.encode(c):
            g.advance(t)
        assert g.is_finished() and g.accepts_eos()
    g = Grammar(compiled)
    assert not any(g.accepts_token(t) for t in info.encode("aab")[:1]) or not g.accepts_eos()
    first = {info.token_bytes[t][:1] for t in g.allowed_token_ids() if info.token_bytes[t]}
    assert first == {b"a", b"(", b"d", b"n"}


def test_rollback_copy_and_errors(compiler, info):
    compiled = compiler.compile("regex", ISO_DATE)
    g = Grammar(compiled)
    ids = info.encode("2024-05-17")
    for t in ids:
        g.advance(t)
    assert g.accepts_eos() and g.is_finished()
    c = g.copy()
    g.rollback(2)
    assert not g.accepts_eos() and g.tokens == ids[:-2]
    assert c.tokens == ids  # the copy is independent
    for t in ids[-2:]:
        g.advance(t)
    assert g.state == c.state
    with pytest.raises(ValueError):
        g.rollback(len(ids) + 1)
    with pytest.raises(GrammarStateError):
        Grammar(compiled).advance(info.encode("x")[0])
    eos = min(info.eos_token_ids)
    with pytest.raises(GrammarStateError):
        Grammar(compiled).advance(eos)  # EOS before a full match
    g.advance(eos)
    assert g.terminated and g.allowed_token_ids() == []
    g.rollback(0)
    assert not g.terminated


def test_batched_mask_rows_padding_and_eos(compiler, info):
    compiled = compiler.compile("regex", WORDS)
    width = info.vocab_size
    done = Grammar(compiled)
    for t in info.encode("apple"):
        done.advance(t)
    rows = [Grammar(compiled), None, done]
    logits = torch.zeros(3, width)
    apply_grammar_masks(rows, logits)
    allowed0 = set(torch.nonzero(logits[0] == 0).flatten().tolist())
    assert allowed0 == set(rows[0].allowed_token_ids())
    assert torch.all(logits[1] == 0)  # unconstrained row untouched
    eos = min(info.eos_token_ids)
    assert logits[2, eos] == 0 and (logits[2] == 0).sum() == 1  # finished: EOS only
    assert eos not in allowed0  # EOS never before a full match
    with pytest.raises(ValueError):
        apply_grammar_masks([rows[0]], torch.zeros(1, width + 64))


def test_padded_model_vocab(tokenizer):
    """Model vocab wider than the tokenizer: pad ids are always masked."""
    from sgl.runtime.constrained import GrammarCompiler

    c = GrammarCompiler(tokenizer, 49152 + 64)
    try:
        g = c.grammar("regex", r"[a-z]+")
        logits = torch.zeros(1, 49152 + 64)
        apply_grammar_masks([g], logits)
        assert torch.all(logits[0, 49152:] == float("-inf"))
    finally:
        c.shutdown()


def test_fill_bitmask_matches_allowed_ids(compiler, info):
    g = compiler.grammar("regex", PHONE)
    words = (info.vocab_size + 31) // 32
    bitmask = torch.zeros(2, words, dtype=torch.int32)
    g.fill_bitmask(bitmask, 1)
    bits = ((bitmask[1].unsqueeze(-1) >> torch.arange(32)) & 1).flatten().bool()
    assert set(torch.nonzero(bits).flatten().tolist()) == set(g.allowed_token_ids())
    assert bitmask[0].abs().sum() == 0
