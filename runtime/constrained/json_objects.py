"""Regexes for JSON arrays and objects (see json_schema.py for the whitespace policy)."""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from .errors import UnsupportedSchemaError, count_keyword
from .regex_text import (
    END,
    RAW_STRING_CHAR,
    SENTINEL,
    STRING_CHAR,
    Pattern,
    alt,
    char_class,
    escape,
    opt,
    repeat,
    seq,
)
from .schema_merge import SchemaMerger


class _WhitespaceOptions(Protocol):
    whitespace: str


class SchemaTranslator(Protocol):
    """What the array and object rules need from json_schema.SchemaTranslator (a Protocol, so
    this module does not import json_schema, which imports it)."""

    options: _WhitespaceOptions
    merger: SchemaMerger

    def value(self, schema: Any, pointer: str, depth: int) -> Pattern: ...

_TRIVIAL = (True, {})


# --- arrays -----------------------------------------------------------------------------------
def array_regex(tr: SchemaTranslator, s: dict[str, Any], pointer: str, depth: int) -> Pattern:
    ws = tr.options.whitespace
    lo = count_keyword(s, "minItems", pointer) or 0
    hi = count_keyword(s, "maxItems", pointer)
    if "contains" in s:
        raise UnsupportedSchemaError("contains", pointer)
    if s.get("uniqueItems") is True and (hi is None or hi > 1):
        raise UnsupportedSchemaError("uniqueItems", pointer, "unless maxItems <= 1")
    prefix = [tr.value(p, f"{pointer}/prefixItems/{i}", depth + 1)
              for i, p in enumerate(s.get("prefixItems", []))]
    # Past the prefix: `items`, else `unevaluatedItems` (those items are unevaluated), else any.
    key = "items" if "items" in s else "unevaluatedItems" if "unevaluatedItems" in s else None
    item = tr.value(s[key] if key else True, f"{pointer}/{key or 'items'}", depth + 1)
    comma = f"{ws},{ws}"

    def tail(i: int) -> Pattern:
        """Elements i.. (each after a comma when i > 0); the array may stop here if i >= lo."""
        stop = "" if i >= lo else None
        if hi is not None and i >= hi:
            return stop
        if i < len(prefix):
            return alt([stop, seq(comma if i else "", prefix[i], tail(i + 1))])
        need, room = max(lo - i, 0), (hi - i if hi is not None else None)
        more = seq(comma, item)
        if i > 0:
            return repeat(more, need, room)
        first = seq(item, repeat(more, max(need - 1, 0), room - 1 if room is not None else None))
        return alt(["" if need == 0 else None, first])

    return seq(f"\\[{ws}", tail(0), f"{ws}\\]")


# --- objects ----------------------------------------------------------------------------------
def _name_regex(name: str) -> str:
    return escape(json.dumps(name, ensure_ascii=False))


def _not_in(names: list[str]) -> Pattern:
    """Raw (unescaped) JSON string contents differing from every name in ``names``."""
    if not names:
        return f"{RAW_STRING_CHAR}*"
    heads: dict[str, list[str]] = {}
    for n in names:
        if n:
            heads.setdefault(n[0], []).append(n[1:])
    others = char_class(heads, negated=True)[:-1] + "\"\\\\\\x00-\\x1f" + SENTINEL + END + "]"
    parts: list[Pattern] = [None if "" in names else "", seq(others, f"{RAW_STRING_CHAR}*")]
    for c, rests in heads.items():
        parts.append(seq(escape(c), _not_in(rests)))
    return alt(parts)


def _known_members(members: list[tuple[Pattern, bool]], comma: str) -> tuple[Pattern, bool]:
    """(regex for a non-empty in-order selection, whether none at all is allowed).

    Optional members may be skipped; a comma goes before every member but the first present.
    """
    present = [(m, req) for m, req in members if m is not None]
    if any(m is None and req for m, req in members):
        return None, False

    def after(i: int) -> str:
        return "".join(seq(comma, m) if req else opt(seq(comma, m)) for m, req in present[i:])

    options: list[Pattern] = []
    for i, (m, req) in enumerate(present):
        options.append(seq(m, after(i + 1)))
        if req:
            break
    return alt(options), not any(req for _, req in present)


def object_regex(tr: SchemaTranslator, s: dict[str, Any], pointer: str, depth: int) -> Pattern:  # noqa: C901
    ws = tr.options.whitespace
    comma, colon = f"{ws},{ws}", f"{ws}:{ws}"
    props: dict[str, Any] = dict(s.get("properties", {}))
    required = list(s.get("required", []))
    pattern_props: dict[str, Any] = s.get("patternProperties", {})
    add_key = "additionalProperties" if "additionalProperties" in s else (
        "unevaluatedProperties" if "unevaluatedProperties" in s else None)
    extra = s[add_key] if add_key else None
    # Extras are generated when explicitly allowed, or when the object declares no properties.
    allow_extras = extra not in (None, False) or (add_key is None and not props and not pattern_props)
    if allow_extras and pattern_props:
        raise UnsupportedSchemaError("patternProperties", pointer, "together with additional properties")
    if s.get("dependentSchemas"):
        raise UnsupportedSchemaError("dependentSchemas", pointer)
    names_schema = s.get("propertyNames", True)
    if allow_extras and names_schema not in _TRIVIAL:
        raise UnsupportedSchemaError("propertyNames", pointer, "together with additional properties")
    for name in required:
        if name not in props:
            props[name] = extra if extra is not None else True
    required_set = set(required)
    names_re = tr.value(names_schema, f"{pointer}/propertyNames", depth + 1) if names_schema not in _TRIVIAL else None
    members: list[tuple[Pattern, bool]] = []
    kept: list[str] = []
    for name, sub in props.items():
        schemas = [sub, *(p for pat, p in pattern_props.items() if re.search(pat, name))]
        at = f"{pointer}/properties/{name}"
        value = tr.value(tr.merger.merge_all(schemas, at) if len(schemas) > 1 else sub, at, depth + 1)
        if names_re is not None and not re.fullmatch(names_re, json.dumps(name, ensure_ascii=False)):
            value = None  # the name itself violates propertyNames
        if value is not None:
            kept.append(name)
        members.append((seq(_name_regex(name), colon, value), name in required_set))
    _check_counts(s, pointer, allow_extras, kept, required_set)
    _check_dependencies(s, pointer, allow_extras, kept, required_set)
    known, empty_ok = _known_members(members, comma)
    if known is None and not empty_ok:
        return None
    body: Pattern = alt([known, "" if empty_ok else None])
    if allow_extras:
        extra_value = tr.value(True if extra is None else extra, f"{pointer}/{add_key or 'additionalProperties'}", depth + 1)
        extra_key = f'"{_not_in(list(props))}"' if props else f'"{STRING_CHAR}*"'
        member = seq(extra_key, colon, extra_value)
        more = repeat(seq(comma, member), 0, None)
        body = alt([seq(known, more), seq(member, more) if empty_ok else None, "" if empty_ok else None])
    return seq(f"\\{{{ws}", body, f"{ws}\\}}")


def _check_counts(s: dict[str, Any], pointer: str, extras: bool, kept: list[str], required: set[str]) -> None:
    lo, hi = count_keyword(s, "minProperties", pointer), count_keyword(s, "maxProperties", pointer)
    if lo is not None and lo > len(required & set(kept)):
        raise UnsupportedSchemaError("minProperties", pointer, "more than the required properties")
    if hi is not None and (extras or hi < len(kept)):
        raise UnsupportedSchemaError("maxProperties", pointer, "fewer than the possible properties")


def _check_dependencies(s: dict[str, Any], pointer: str, extras: bool, kept: list[str], required: set[str]) -> None:
    """dependentRequired holds statically when no generable trigger has a missing dependency."""
    for trigger, deps in s.get("dependentRequired", {}).items():
        if deps and (extras or (trigger in kept and not set(deps) <= required)):
            raise UnsupportedSchemaError("dependentRequired", pointer, f"for {trigger!r}")
