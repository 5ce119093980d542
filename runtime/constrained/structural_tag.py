"""SGLang's structural tag -> one Lark grammar (compiled by llguidance).

``{"type": "structural_tag", "structures": [{"begin", "schema", "end"}], "triggers": [...]}``:
free text until one of the triggers appears, then the text must go on as the ``begin`` of a
structure whose trigger it is, then JSON valid under that structure's ``schema``, then its
``end``; then free text again (any number of times). Each ``begin`` must start with one of the
triggers. llguidance's StructTag does the lazy matching (a trigger is a lazy lexeme).
"""

from __future__ import annotations

import json
from typing import Any

import llguidance

from .errors import InvalidGrammarError

FIELD = "structural_tag"


def _load(tag: Any) -> dict[str, Any]:
    if isinstance(tag, str):
        try:
            tag = json.loads(tag)
        except json.JSONDecodeError as exc:
            raise InvalidGrammarError(f"{FIELD} is not valid JSON ({exc}); pass an object") from None
    if not isinstance(tag, dict):
        raise InvalidGrammarError(f"{FIELD} must be an object with `structures` and `triggers`")
    return tag


def canonical_tag(tag: Any) -> str:
    """The tag as compact JSON (the cache key); raises like structural_tag_grammar."""
    tag = _load(tag)
    structural_tag_grammar(tag)
    return json.dumps({"structures": tag.get("structures"), "triggers": tag.get("triggers")},
                      separators=(",", ":"))


def structural_tag_grammar(tag: Any) -> str:
    """Lark grammar text of a structural tag; raises InvalidGrammarError naming the bad field."""
    tag = _load(tag)
    structures, triggers = tag.get("structures"), tag.get("triggers")
    if not isinstance(structures, list) or not structures:
        raise InvalidGrammarError(f"{FIELD}.structures must be a non-empty list of {{begin, schema, end}}")
    if not isinstance(triggers, list) or not triggers or not all(isinstance(t, str) and t for t in triggers):
        raise InvalidGrammarError(f"{FIELD}.triggers must be a non-empty list of non-empty strings")
    tags = []
    for i, s in enumerate(structures):
        where = f"{FIELD}.structures.{i}"
        if not isinstance(s, dict) or not isinstance(s.get("begin"), str) or not isinstance(s.get("end"), str):
            raise InvalidGrammarError(f"{where} needs string `begin` and `end` and a `schema` object")
        schema = s.get("schema", s.get("parameters"))
        if not isinstance(schema, dict):
            raise InvalidGrammarError(f"{where}.schema must be a JSON schema object")
        trigger = next((t for t in triggers if s["begin"].startswith(t)), None)
        if trigger is None:
            raise InvalidGrammarError(f"{where}.begin {s['begin']!r} starts with none of {FIELD}.triggers {triggers}")
        tags.append(llguidance.StructTag(trigger=trigger, begin=s["begin"], grammar=schema, end=s["end"]))
    try:
        return llguidance.StructTag.to_grammar(tags, assume_special=False)
    except (ValueError, AssertionError, TypeError) as exc:
        raise InvalidGrammarError(f"{FIELD}: {exc}") from None
