"""Errors raised by constrained decoding.

Every error is a ``ValueError`` so callers that validate user input (``sgl.gen``, the HTTP
server) can catch one type and answer 400. Messages name the field and say how to fix it.
"""

from __future__ import annotations

from typing import Any


class ConstraintError(ValueError):
    """Base class: a constraint (regex, JSON schema, dtype, choices) cannot be used."""


class InvalidRegexError(ConstraintError):
    """The ``regex`` does not parse, or uses a construct a DFA cannot express."""


class InvalidSchemaError(ConstraintError):
    """The ``json_schema`` is not valid JSON / not a JSON Schema object."""


class InvalidGrammarError(ConstraintError):
    """The ``ebnf`` / Lark grammar or the structural tag does not parse or cannot be used."""


class UnsupportedSchemaError(ConstraintError):
    """The schema is valid but uses a keyword that cannot be enforced while decoding."""

    def __init__(self, keyword: str, pointer: str, reason: str = "") -> None:
        self.keyword = keyword
        self.pointer = pointer or "#"
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"keyword {keyword!r} at {self.pointer} cannot be enforced{why}; remove it"
        )


class ConflictingConstraintsError(ConstraintError):
    """More than one of ``regex`` / ``json_schema`` / ``dtype`` / ``choices`` was given."""


class GrammarStateError(ConstraintError):
    """A token was advanced that the grammar does not allow (an engine bug, not user input)."""


def count_keyword(schema: dict[str, Any], key: str, pointer: str) -> int | None:
    """The value of a count keyword (minLength, maxItems, ...): None when absent; raises unless
    it is a non-negative integer."""
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise UnsupportedSchemaError(key, pointer, "must be a non-negative integer")
    return int(value)


def advance_eos(grammar: Any, token_id: int) -> bool:
    """The start every grammar's advance() shares: refuses tokens after EOS, and consumes an
    EOS token (True) where the grammar may end; raises GrammarStateError otherwise."""
    if grammar.terminated:
        raise GrammarStateError("advance() after EOS; the request is finished")
    if token_id not in grammar.compiled.info.eos_token_ids:
        return False
    if not grammar.accepts_eos():
        raise GrammarStateError(f"EOS token {token_id} before the grammar can end")
    grammar.terminated = True
    return True
