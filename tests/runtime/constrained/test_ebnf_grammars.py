"""GBNF / Lark grammars and structural tags through llguidance, as masks over the default model's
49k vocabulary: each string is walked token by token (the tokenizer's own split) and every token
must be in the decoding mask, and the grammar must accept at the end; rejected strings fail one
of the two."""

from __future__ import annotations

import pytest
from sgl.runtime.constrained import ConflictingConstraintsError, grammar_spec
from sgl.runtime.constrained.errors import InvalidGrammarError

ARITHMETIC = r'''
root   ::= expr
expr   ::= term (("+" | "-") term)*
term   ::= factor (("*" | "/") factor)*
factor ::= [0-9]+ | "(" expr ")"
'''

JSON_GBNF = r'''
root   ::= value
value  ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ( string ":" value ("," string ":" value)* )? "}"
array  ::= "[" ( value ("," value)* )? "]"
string ::= "\"" [a-zA-Z0-9 _]* "\""
number ::= "-"? [0-9]+ ("." [0-9]+)?
'''

# a small programming language: assignments and prints, a subset of Python (tests parse with ast)
PROGRAM = r'''
root  ::= stmt+
stmt  ::= (assign | print) "\n"
assign ::= ident " = " expr
print ::= "print(" expr ")"
expr  ::= atom ((" + " | " * " | " - ") atom)*
atom  ::= ident | [0-9]+ | "(" expr ")"
ident ::= [a-z] [a-z0-9_]*
'''

LARK = r'''
start: greeting " " NAME "!"
greeting: "hello" | "hi"
NAME: /[A-Z][a-z]+/
'''

CASES = {
    "arithmetic": (ARITHMETIC, ["1+2", "(1+2)*3", "((4))/2-7", "12*(3+4)*5"],
                   ["1+", "(1+2", "1++2", "a+1", "1 + 2", ")("]),
    "json": (JSON_GBNF, ['{"a":1}', '[1,2.5,"x",true,null]', '{"k":{"n":[{}]}}', '"hi there"', "-3.25"],
             ['{"a":}', "[1,]", "{'a':1}", '{"a":1', "tru", "01.", '{"a" :1}']),
    "program": (PROGRAM, ["x = 1\n", "x = 1 + 2\nprint(x * 3)\n", "total = (a + b) * 2\nprint(total)\n"],
                ["x = \n", "print x\n", "x = 1", "1 = x\n", "x = (1 + 2\n"]),
    "lark": (LARK, ["hello World!", "hi Ann!"], ["hello world!", "hey Bob!", "hi Ann"]),
}


def walk(compiler, grammar: str, text: str) -> bool:
    """True if every token of ``text`` is in the decoding mask where it comes and the grammar
    may end after it."""
    g = compiler.grammar("ebnf", grammar)
    for t in compiler.info.encode(text):
        if t not in set(g.allowed_token_ids()):
            return False
        g.advance(t)
    return g.accepts_eos() and compiler.info.eos_token_ids & set(g.allowed_token_ids()) != set()


@pytest.mark.parametrize("name", sorted(CASES))
def test_grammar_accepts_and_rejects(compiler, name):
    grammar, good, bad = CASES[name]
    for text in good:
        assert walk(compiler, grammar, text), (name, text)
    for text in bad:
        assert not walk(compiler, grammar, text), (name, text)


def test_mask_blocks_what_the_grammar_forbids(compiler, info):
    g = compiler.grammar("ebnf", ARITHMETIC)
    allowed = set(g.allowed_token_ids())
    digit, plus = info.encode("7")[0], info.encode("+")[0]
    assert digit in allowed and plus not in allowed and not (info.eos_token_ids & allowed)
    g.advance(digit)
    assert plus in set(g.allowed_token_ids()) and info.eos_token_ids & set(g.allowed_token_ids())
    g.rollback(1)
    assert plus not in set(g.allowed_token_ids())


def test_forced_text_becomes_forced_tokens(compiler, info):
    g = compiler.grammar("ebnf", 'root ::= "The answer is: " [0-9]+')
    forced = g.forced_tokens()
    assert info.decode_bytes(forced).decode().startswith("The answer is")
    assert g.mask_key() == ("token", forced[0])


def test_structural_tag_is_free_until_the_trigger(compiler, info):
    tag = {"structures": [{"begin": "<function=get_weather>", "end": "</function>",
                           "schema": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                                      "required": ["city"]}}],
           "triggers": ["<function="]}

    def ok(text: str) -> bool:
        g = compiler.grammar("structural_tag", tag)
        for t in info.encode(text):
            if not g.accepts_token(t):
                return False
            g.advance(t)
        return g.accepts_eos()

    assert ok("Anything at all, even {not json}.")
    assert ok('Sure. <function=get_weather>{"city":"Paris"}</function> Done.')
    assert not ok('Sure. <function=get_weather>{"city":"Berlin"}</function>')
    assert not ok("<function=get_weather>not json</function>")


def test_bad_grammars_and_two_constraints_name_the_field():
    with pytest.raises(InvalidGrammarError, match="ebnf grammar does not parse.*undefined_rule"):
        grammar_spec(ebnf="root ::= undefined_rule")
    with pytest.raises(ConflictingConstraintsError, match="regex and ebnf"):
        grammar_spec(regex="a", ebnf=ARITHMETIC)
    with pytest.raises(InvalidGrammarError, match="structural_tag.triggers"):
        grammar_spec(structural_tag={"structures": [{"begin": "<f>", "end": "</f>", "schema": {}}], "triggers": []})


def test_forced_tokens_are_what_one_hot_decoding_gives(compiler, info):
    """Jump-forward appends forced_tokens() at once; decoding them one by one under one-hot masks
    gives the same tokens, so greedy output does not depend on jump-forward."""
    grammar = 'root ::= "{\\"name\\": \\"" [a-z]+ "\\", \\"kind\\": \\"tool\\"}"'
    jumped, stepped = compiler.grammar("ebnf", grammar), compiler.grammar("ebnf", grammar)
    first = jumped.forced_tokens()
    assert len(first) >= 2
    for t in list(first):
        jumped.advance(t)
    seen = []
    while stepped.mask_key()[0] == "token":
        t = stepped.mask_key()[1]
        assert stepped.allowed_token_ids() == [t]
        seen.append(t)
        stepped.advance(t)
    assert seen == first and jumped.forced_tokens() == stepped.forced_tokens() == []
