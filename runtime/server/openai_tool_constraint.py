"""The constraint of tool_choice "required" or a named function: the output is one call (or, with
parallel_tool_calls, several) in the parser's format, each call's arguments under its function's
JSON schema.

The arguments always go through our own JSON-schema path (``schema_to_regex``), so a schema
behaves the same here as in ``response_format``. The call's frame around them is text, except
for the format's markers that the model's tokenizer holds as one token (Mistral's
`[TOOL_CALLS]`, DeepSeek's `<｜tool▁call▁begin｜>`, harmony's `<|channel|>`): a regex cannot ask for
a special token, so then the whole constraint is a Lark grammar (llguidance, `<[id]>` for each
such token) with the arguments' regex as one of its terminals. Where no marker is one token (a
tokenizer without them), the markers are text and the constraint stays a regex.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import llguidance

from ..constrained import schema_to_regex
from ..constrained.errors import ConstraintError
from ..constrained.regex_text import escape
from .errors import APIError
from .openai_tool_parsers import ARGS, Pieces, ToolParser

TokenId = Callable[[str], int | None]  # a marker -> the id of the one token it is, or None


def single_token_id(tokenizer: Any) -> TokenId:
    """``text`` -> its token id where the tokenizer writes it as exactly one token."""
    def token_id(text: str) -> int | None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None
    return token_id


def calls_constraint(tools: list[dict[str, Any]], parallel: bool, parser: ToolParser,
                     token_id: TokenId | None = None) -> tuple[str, str]:
    """(sampling field, text): ("regex", ...) or, with marker tokens, ("ebnf", a Lark grammar)."""
    args = []
    for i, t in enumerate(tools):
        try:
            args.append(schema_to_regex(t["function"]["parameters"]))
        except ConstraintError as e:
            raise APIError(400, f"`tools.{i}.function.parameters`: {e}", f"tools.{i}.function.parameters") from None
    calls = [parser.call_pieces(t["function"]["name"]) for t in tools]
    special = {m: i for m in parser.markers if token_id is not None and (i := token_id(m)) is not None}
    if not special:
        return "regex", _regex(calls, args, parser.frame, parallel)
    return "ebnf", _lark(calls, args, parser.frame, parallel, special)


def _regex(calls: list[Pieces], args: list[str], frame: tuple[Pieces, Pieces, Pieces], parallel: bool) -> str:
    def text(pieces: Pieces, arg: str = "") -> str:
        return "".join(arg if p is ARGS else escape(p) for p in pieces)

    one = "|".join(f"({text(c, a)})" for c, a in zip(calls, args))
    before, between, after = (text(p) for p in frame)
    return before + (f"({one})({between}({one}))*" if parallel else f"({one})") + after


def _lark(calls: list[Pieces], args: list[str], frame: tuple[Pieces, Pieces, Pieces], parallel: bool,
          special: dict[str, int]) -> str:
    def items(pieces: Pieces, k: int = -1) -> str:
        out = []
        for p in pieces:
            if p is ARGS:
                out.append(f"args_{k}")
            elif p in special:
                out.append(f"<[{special[p]}]>")
            elif p:
                out.append(json.dumps(p, ensure_ascii=False))
        return " ".join(out)

    before, between, after = (items(p) for p in frame)
    body = f"call ({between} call)*" if parallel else "call"
    rules = [f"start: {before} {body} {after}".rstrip(), "call: " + " | ".join(f"call_{k}" for k in range(len(calls)))]
    for k, (c, a) in enumerate(zip(calls, args)):
        rules.append(f"call_{k}: {items(c, k)}")
        rules.append(f"args_{k}: /{llguidance.regex_to_lark(a)}/")
    return "\n".join(rules) + "\n"
