"""Forced text and forced tokens: jump-forward appends exactly the tokens the decoding mask
would force one by one, so decoding with and without it gives the same token sequence."""

from __future__ import annotations

import random

import pytest
import torch
from sgl.runtime.constrained import Grammar, apply_grammar_masks

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
SCHEMAS = [
    PERSON,
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 4},
                                               "maxItems": 3}, "ok": {"type": "boolean"}}, "required": ["tags"]},
    {"type": "object", "properties": {"kind": {"const": "fruit"}, "n": {"enum": [1, 22, 333]}},
     "required": ["kind", "n"]},
]


def test_forced_prefix_of_a_schema(compiler, info):
    g = compiler.grammar("json_schema", PERSON)
    assert g.jump_forward_string() == '{"name":"'
    forced = g.forced_tokens()
    # the tokenizer's own split; `":"` stays with the model: `":""` / `":"\` could follow it
    assert forced == info.encode('{"name":"')[: len(forced)] and len(forced) >= 2
    assert g.allowed_token_ids() == forced[:1]  # the decoding mask forces the first of them
    assert len(g.compiled.allowed_ids(g.state)) > 1  # the grammar alone allows other splits


def test_forced_tokens_are_consumed_then_recomputed(compiler, info):
    g = compiler.grammar("json_schema", PERSON)
    forced = g.forced_tokens()
    g.advance(forced[0])
    assert g.forced_tokens() == forced[1:]  # still the list computed at the start
    for t in forced[1:]:
        g.advance(t)
    if info.decode_bytes(g.tokens) != b'{"name":"':  # the last token was held back: the model's
        assert g.forced_tokens() == [] and len(g.allowed_token_ids()) > 1  # choice, nothing forced
        g.advance(info.encode('{"name":"')[-1])
    assert len(g.allowed_token_ids()) > 1  # inside the string: free
    for t in info.encode('Ann"'):
        g.advance(t)
    assert g.jump_forward_string() == ',"age":'
    assert g.forced_tokens() == info.encode(',"age":')[: len(g.forced_tokens())]


def test_last_token_is_left_to_the_model_when_it_could_merge(compiler, info):
    g = compiler.grammar("regex", r"ab(c|d)")  # "ab" is forced; "abc" / "abd" may be tokens
    forced = g.forced_tokens()
    text = info.decode_bytes(forced)
    longer = [t for t in info.extensions(info.encode("ab")[-1]) if g.compiled.next_state(g.state, int(t)) is not None]
    assert (text == b"") if longer else (text == b"ab")
    g2 = compiler.grammar("regex", r"answer: (yes|no)")
    assert g2.jump_forward_string() == "answer: "
    assert info.decode_bytes(g2.forced_tokens()) in (b"answer:", b"answer: ", b"answer")


def test_no_forced_text_for_free_choice(compiler):
    g = compiler.grammar("regex", r"(yes|no)")
    assert g.jump_forward_string() == "" and g.forced_tokens() == []


def test_no_jump_inside_a_multibyte_char(compiler, info):
    g = compiler.grammar("regex", r"(é|è)!")
    lead = "é".encode()[:1]
    first = [t for t in g.compiled.allowed_ids(g.state) if info.token_bytes[t] == lead]
    if first:  # a lone lead byte: the character is incomplete, nothing is forced yet
        g.advance(first[0])
        assert g.jump_forward_string() == "" and g.forced_tokens() == []


def test_rollback_and_copy_drop_or_keep_forced_tokens(compiler):
    g = compiler.grammar("json_schema", PERSON)
    forced = g.forced_tokens()
    c = g.copy()
    g.advance(forced[0])
    assert c.tokens == [] and c.forced_tokens() == forced
    g.rollback(1)
    assert g.forced_tokens() == forced


def fake_logits(history: list[int], vocab: int) -> torch.Tensor:
    """A deterministic stand-in for a model: logits depend on the whole token history."""
    gen = torch.Generator().manual_seed(hash(tuple(history)) % (1 << 31))
    return torch.randn(1, vocab, generator=gen)


def decode(grammar: Grammar, jump: bool, max_tokens: int = 48) -> list[int]:
    """Greedy decoding under the mask; with ``jump``, forced tokens are appended unsampled."""
    vocab = grammar.compiled.info.vocab_size
    eos = grammar.compiled.info.eos_token_ids
    while len(grammar.tokens) < max_tokens:
        logits = fake_logits(grammar.tokens, vocab)
        apply_grammar_masks([grammar], logits)
        tok = int(logits.argmax())
        grammar.advance(tok)
        if tok in eos or grammar.is_finished():
            break
        if jump:
            for t in grammar.forced_tokens():
                grammar.advance(t)
    return grammar.tokens[:max_tokens]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_greedy_tokens_same_with_and_without_jump_forward(compiler, info, schema):
    compiled = compiler.compile("json_schema", schema)
    with_jump = decode(Grammar(compiled), jump=True)
    without = decode(Grammar(compiled), jump=False)
    assert with_jump == without
    assert len(with_jump) > 8
    rng = random.Random(0)  # and a random walk over the decoding mask only ever forces grammar tokens
    g = Grammar(compiled)
    for _ in range(32):
        if g.is_finished():
            break
        g.advance(rng.choice(g.allowed_token_ids()))


@pytest.mark.parametrize("schema", SCHEMAS)
def test_forced_tokens_are_precomputed_on_the_compile_thread(compiler, info, schema, monkeypatch):
    """A state's first visit on the scheduler thread is a lookup, not a tokenizer call (only
    states without forced text, such as the middle of a multi-byte character, are left lazy),
    and the precomputed answers are the ones a request would compute on demand."""
    import sgl.runtime.constrained.grammar as grammar_module

    compiled = compiler.compile("json_schema", schema)
    assert len(compiled._forced) > 5
    encoded = []  # forced texts tokenized after compilation
    real = grammar_module.forced_tokens
    monkeypatch.setattr(grammar_module, "forced_tokens", lambda c, s, text: (text and encoded.append(text)) or real(c, s, text))
    rng = random.Random(1)
    walks = []
    for _ in range(5):  # random walks over the decoding mask: first visits of many states
        g, steps = Grammar(compiled), []
        for _ in range(40):
            if g.is_finished():
                break
            steps.append(list(g.forced_tokens()))
            g.advance(rng.choice(g.allowed_token_ids()))
        walks.append((g.tokens, steps))
    assert encoded == []
    monkeypatch.undo()
    lazy = grammar_module.CompiledGrammar(compiled.regex, info)  # no precompute: forced tokens on demand
    assert lazy._forced == {}
    for tokens, steps in walks:
        g = Grammar(lazy)
        for token, forced in zip(tokens, steps):
            assert g.forced_tokens() == forced
            g.advance(token)
