"""With a reasoning parser the output's constraint starts after `</think>`: the thinking is free
text (anything without the end marker), then the JSON schema's regex (our own JSON path)."""

from __future__ import annotations

from sgl.runtime.server.openai_reasoning import get_reasoning_parser

SCRIPTED = '<think>\nThe user wants a city. Paris {maybe}? Not </thin yet.\n</think>\n\n{"city":"Paris"}'


def test_json_constraint_applies_after_the_thinking(compiler, info):
    from sgl.runtime.constrained import schema_to_regex

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    regex = get_reasoning_parser("qwen3").constrain_after(schema_to_regex(schema))
    g = compiler.grammar("regex", regex)
    ids = info.encode(SCRIPTED)
    for t in ids:
        assert t in set(g.allowed_token_ids()) or g.accepts_token(t), info.decode_bytes([t])
        g.advance(t)
    assert g.accepts_eos()
    # inside the thinking, text that is no JSON is allowed; after </think>, only the JSON
    g2 = compiler.grammar("regex", regex)
    for t in info.encode("<think>\nHello"):
        g2.advance(t)
    assert g2.accepts_token(info.encode(" world")[0])
    g3 = compiler.grammar("regex", regex)
    for t in info.encode("<think>ok</think>\n"):
        g3.advance(t)
    assert not g3.accepts_token(info.encode("Hello")[0]) and g3.accepts_token(info.encode("{")[0])
