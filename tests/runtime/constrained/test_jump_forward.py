"""Forced strings and retokenization at the jump boundary."""

from __future__ import annotations

import pytest
from sgl.runtime.constrained import Grammar, jump_and_retokenize

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def test_forced_prefix_of_a_schema(compiler):
    g = compiler.grammar("json_schema", PERSON)
    assert g.jump_forward_string() == '{"name":"'


def test_jump_then_generate_then_jump(compiler, info):
    g = compiler.grammar("json_schema", PERSON)
    jf = g.jump_forward()
    assert jf is not None and jf.n_rollback == 0
    assert info.decode_bytes(jf.token_ids) == b'{"name":"'
    assert jf.token_ids == info.encode('{"name":"')  # what the tokenizer itself produces
    for t in info.encode("Ann"):
        g.advance(t)
    assert g.jump_forward_string() == ""  # the string may go on
    g.advance(info.encode('"')[0])
    assert g.jump_forward_string() == ',"age":'
    before = list(g.tokens)
    jf = g.jump_forward()
    text = '{"name":"Ann"' + ',"age":'
    assert info.decode_bytes(g.tokens) == text.encode()
    assert g.tokens[: len(before) - jf.n_rollback] == before[: len(before) - jf.n_rollback]
    for t in info.encode("7}"):
        g.advance(t)
    assert g.is_finished()


def test_no_forced_text_for_free_choice(compiler):
    g = compiler.grammar("regex", r"(yes|no)")
    assert g.jump_forward_string() == "" and g.jump_forward() is None
    g2 = compiler.grammar("regex", r"answer: (yes|no)")
    assert g2.jump_forward_string() == "answer: "


def test_retokenize_merges_across_the_boundary(info):
    prev = info.encode('{"')
    r = jump_and_retokenize(prev, 'name":"', info)
    assert prev[: len(prev) - r.n_drop] + r.new_ids == info.encode('{"name":"')


@pytest.mark.parametrize("prefix,forced", [("caf", "é au lait"), ("naïve ", "😀 end"), ("日本", "語です")])
def test_retokenize_multibyte_boundaries(info, prefix, forced):
    prev = info.encode(prefix)
    r = jump_and_retokenize(prev, forced, info)
    out = prev[: len(prev) - r.n_drop] + r.new_ids
    assert info.decode_bytes(out) == (prefix + forced).encode()


def test_retokenize_never_starts_inside_a_character(info):
    """A window of 1 token that starts with a UTF-8 continuation byte is widened."""
    prev = info.encode("x😀😀")
    r = jump_and_retokenize(prev, "!", info, lookback=1)
    out = prev[: len(prev) - r.n_drop] + r.new_ids
    assert info.decode_bytes(out) == "x😀😀!".encode()
    kept = info.decode_bytes(prev[: len(prev) - r.n_drop])
    kept.decode("utf-8")  # the kept part ends on a character boundary


def test_no_jump_inside_a_multibyte_char(compiler, info):
    g = compiler.grammar("regex", r"é!")
    first = [t for t in g.allowed_token_ids() if info.token_bytes[t] == "é".encode()[:1]]
    if first:  # a lone lead byte: the character is incomplete, nothing is forced yet
        g.advance(first[0])
        assert g.jump_forward_string() == ""


def test_jump_forward_copy_is_independent(compiler):
    g = compiler.grammar("json_schema", PERSON)
    c = g.copy()
    g.jump_forward()
    assert c.tokens == [] and isinstance(c, Grammar)
