"""User-facing constraint arguments -> one normalized ``GrammarSpec`` (kind, key).

``grammar_spec`` is cheap (no tokenizer) so ``sgl.gen`` and the server can validate at once;
``to_regex`` does the schema translation (run it off the scheduler thread: compiler.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from .errors import ConflictingConstraintsError, InvalidGrammarError, InvalidRegexError
from .json_schema import SchemaOptions, load_schema, schema_to_regex
from .regex_text import alt, escape

# FRONTEND.md: the built-in regex of each ``dtype``.
DTYPE_REGEX = {
    "int": r"[-+]?[0-9]+[ \n]*",
    "float": r"[-+]?[0-9]*\.?[0-9]+[ \n]*",
    "str": r'"[\w\d\s]*"',
    "bool": r"(True|False)",
}
# Python-only regex syntax that outlines-core's DFA cannot express.
_UNSUPPORTED_REGEX = [(r"\(\?[=!]|\(\?<[=!]", "lookaround"), (r"\\[1-9]|\(\?P=", "backreference"),
                      (r"\(\?[aiLmsux-]+[:)]", "inline flags")]


ENGINE_KINDS = ("ebnf", "structural_tag")  # compiled by llguidance (engine_grammar.py)


class GrammarSpec(NamedTuple):
    kind: str  # "regex" | "json_schema" | "ebnf" | "structural_tag"
    key: str  # the regex, the schema or structural tag as canonical JSON, or the grammar text;
    # (kind, key) is the cache key


def dtype_regex(dtype: Any) -> str:
    name = dtype if isinstance(dtype, str) else getattr(dtype, "__name__", repr(dtype))
    if name not in DTYPE_REGEX:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of int, float, str, bool")
    return DTYPE_REGEX[name]


def choices_regex(choices: Sequence[str]) -> str:
    if not choices or not all(isinstance(c, str) for c in choices):
        raise ValueError("choices must be a non-empty list of strings")
    return alt(escape(c) for c in choices) or ""


def check_regex(regex: str) -> str:
    """Raise InvalidRegexError (naming ``regex``) if the pattern cannot be used; return it."""
    if not isinstance(regex, str):
        raise InvalidRegexError(f"regex must be a string, got {type(regex).__name__}")
    try:
        re.compile(regex)
    except re.error as exc:
        raise InvalidRegexError(f"regex {regex!r} does not compile: {exc}; fix the pattern") from exc
    for probe, what in _UNSUPPORTED_REGEX:
        if re.search(probe, regex):
            raise InvalidRegexError(f"regex {regex!r} uses a {what}, which constrained decoding "
                                    "cannot enforce; rewrite it without")
    return regex


def grammar_spec(regex: str | None = None, json_schema: Any = None, dtype: Any = None,
                 choices: Sequence[str] | None = None, ebnf: str | None = None,
                 structural_tag: Any = None) -> GrammarSpec | None:
    """Validate and normalize; None when unconstrained. At most one argument may be given.

    ``ebnf``: a GBNF (llama.cpp) or Lark grammar; ``structural_tag``: SGLang's structural-tag
    object (a dict or its JSON), see structural_tag.py."""
    given = [n for n, v in (("regex", regex), ("json_schema", json_schema), ("dtype", dtype),
                            ("choices", choices), ("ebnf", ebnf), ("structural_tag", structural_tag))
             if v is not None]
    if len(given) > 1:
        raise ConflictingConstraintsError(
            f"{' and '.join(given)} were given together; pass only one constraint per generation"
        )
    if regex is not None:
        return GrammarSpec("regex", check_regex(regex))
    if dtype is not None:
        return GrammarSpec("regex", dtype_regex(dtype))
    if choices is not None:
        return GrammarSpec("regex", choices_regex(choices))
    if ebnf is not None:
        from .engine_grammar import check_grammar

        if not isinstance(ebnf, str) or not ebnf.strip():
            raise InvalidGrammarError("ebnf must be a non-empty GBNF or Lark grammar string")
        check_grammar("ebnf", ebnf)
        return GrammarSpec("ebnf", ebnf)
    if structural_tag is not None:
        from .engine_grammar import check_grammar
        from .structural_tag import canonical_tag

        key = canonical_tag(structural_tag)
        check_grammar("structural_tag", key)
        return GrammarSpec("structural_tag", key)
    if json_schema is not None:
        schema = load_schema(json_schema)
        return GrammarSpec("json_schema", json.dumps(schema, sort_keys=False, separators=(",", ":")))
    return None


def to_regex(spec: GrammarSpec, options: SchemaOptions | None = None) -> str:
    if spec.kind == "regex":
        return spec.key
    if spec.kind == "json_schema":
        return schema_to_regex(json.loads(spec.key), options)
    raise ValueError(f"unknown grammar kind {spec.kind!r}; use 'regex' or 'json_schema'")
