"""JSON Schema -> regex (our own translator; outlines-core only turns the regex into an index).

Whitespace policy: compact JSON by default (``{"a":1,"b":[1,2]}``, the text of
``json.dumps(x, separators=(",", ":"), ensure_ascii=False)``); ``SchemaOptions.whitespace`` can
allow a bounded pattern such as ``"[ ]?"`` instead. Never unbounded.

Soundness rule: every text the regex accepts is an instance valid under the schema. Where a
regex cannot express a keyword exactly, the translator either under-approximates (generates a
subset of the valid instances; e.g. properties in schema order, no exponent form under numeric
bounds) or raises ``UnsupportedSchemaError`` naming the keyword. It never over-approximates.

Generation choices (all subsets, documented here once):
- objects: properties in ``properties`` order; no properties beyond ``properties`` unless
  ``additionalProperties`` allows them explicitly or the object lists no properties at all;
- untyped values nest at most ``SchemaOptions.max_any_depth`` arrays/objects deep;
- enum/const values are written compactly, objects with their keys in the schema's order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .errors import InvalidSchemaError, UnsupportedSchemaError
from .json_objects import array_regex, object_regex
from .json_strings import string_regex
from .number_ranges import Bound, integer_bounds, integer_range, number_range
from .regex_text import Pattern, alt, escape
from .schema_merge import ANNOTATIONS, NEVER, SchemaMerger, json_key, provably_disjoint

_ALL_TYPES = ("null", "boolean", "number", "string", "array", "object")
_REJECTED = ("not", "$dynamicRef", "$recursiveRef")


@dataclass(frozen=True)
class SchemaOptions:
    whitespace: str = ""  # regex allowed around , : [ ] { } (must be bounded, e.g. "[ ]?")
    max_any_depth: int = 1  # arrays/objects nested inside an untyped value (compile cost grows ~5x per level)

    def __post_init__(self) -> None:
        if any(c in self.whitespace for c in "*+") or "{" in self.whitespace and ",}" in self.whitespace:
            raise ValueError(f"whitespace {self.whitespace!r} must be bounded (no *, +, {{n,}})")


def load_schema(schema: Any) -> Any:
    """A JSON string, a dict/bool, or a pydantic model class -> a plain JSON Schema value."""
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise InvalidSchemaError(f"json_schema is not valid JSON: {exc}; pass a JSON object") from exc
    if not isinstance(schema, (dict, bool)):
        raise InvalidSchemaError(
            f"json_schema must be a JSON object (str), a dict or a pydantic model class, got {type(schema).__name__}"
        )
    return schema


def schema_to_regex(schema: Any, options: SchemaOptions | None = None) -> str:
    """Regex whose full matches are (a documented subset of) the instances valid under ``schema``.

    Raises InvalidSchemaError / UnsupportedSchemaError (ValueError subclasses) naming the keyword.
    """
    root = load_schema(schema)
    regex = SchemaTranslator(root, options or SchemaOptions()).value(root, "#", 0)
    if regex is None:
        raise UnsupportedSchemaError("json_schema", "#", "no JSON value satisfies this schema")
    return regex


def _pointer_get(root: Any, ref: str, pointer: str) -> Any:
    node = root
    for raw in ref[2:].split("/") if ref != "#" else []:
        part = re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), raw)
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise InvalidSchemaError(f"$ref {ref!r} at {pointer} points nowhere") from exc
    return node


def _check_ids(node: Any, pointer: str, has_ref: list[bool], nested_id: list[str]) -> None:
    if isinstance(node, dict):
        if "$ref" in node or "$dynamicRef" in node:
            has_ref[0] = True
        if "$id" in node and pointer != "#":
            nested_id.append(pointer)
        for k, v in node.items():
            if k not in ("enum", "const", "examples", "default"):
                _check_ids(v, f"{pointer}/{k}", has_ref, nested_id)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_ids(v, f"{pointer}/{i}", has_ref, nested_id)


class SchemaTranslator:
    """Walks one schema document; ``value`` returns the regex of a sub-schema."""

    def __init__(self, root: Any, options: SchemaOptions) -> None:
        self.root = root
        self.options = options
        self.merger = SchemaMerger(self.resolve)
        self._ref_stack: list[str] = []
        has_ref: list[bool] = [False]
        nested: list[str] = []
        _check_ids(root, "#", has_ref, nested)
        if has_ref[0] and nested:
            raise UnsupportedSchemaError("$id", nested[0], "a nested $id changes how $ref resolves")

    # --- references -------------------------------------------------------------------------
    def resolve(self, schema: Any, pointer: str) -> dict[str, Any]:
        """``schema`` as a plain dict: booleans become {} / NEVER, a lone $ref is followed."""
        if schema is True:
            return {}
        if schema is False:
            return dict(NEVER)
        if not isinstance(schema, dict):
            raise InvalidSchemaError(f"schema at {pointer} must be an object or a boolean")
        if "$ref" not in schema:
            return schema
        ref = schema["$ref"]
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise UnsupportedSchemaError("$ref", pointer, f"only local '#/...' references, got {ref!r}")
        target = self.resolve(_pointer_get(self.root, ref, pointer), ref)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        if all(k in ANNOTATIONS for k in rest):
            return target
        # The referring schema encloses the target (matters for unevaluated*: schema_merge.py).
        return {**rest, "allOf": [*rest.get("allOf", []), target]}

    # --- dispatch ---------------------------------------------------------------------------
    def value(self, schema: Any, pointer: str, depth: int) -> Pattern:
        """Regex of ``schema`` found at ``pointer``; ``depth`` counts enclosing arrays/objects."""
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if ref is not None:
            if ref in self._ref_stack:  # NOTE: the stack holds the refs being expanded above us
                raise UnsupportedSchemaError("$ref", pointer, f"recursive reference {ref!r}")
            self._ref_stack.append(ref)
        try:
            return self._value(self.resolve(schema, pointer), pointer, depth)
        except RecursionError as exc:
            raise UnsupportedSchemaError("$ref", pointer, "recursive schema") from exc
        finally:
            if ref is not None:
                self._ref_stack.pop()

    def _value(self, s: dict[str, Any], pointer: str, depth: int) -> Pattern:
        for key in _REJECTED:
            if key in s:
                raise UnsupportedSchemaError(key, pointer)
        if "if" in s and ("then" in s or "else" in s):
            raise UnsupportedSchemaError("if", pointer, "conditional schemas")
        if "allOf" in s:
            return self._value(self.merger.merge_all([s], pointer), pointer, depth)
        for key in ("anyOf", "oneOf"):
            if key in s:
                return self._union(s, key, pointer, depth)
        if "enum" in s or "const" in s:
            return self._literals(s, pointer, depth)
        types = s.get("type", list(_ALL_TYPES))
        types = [types] if isinstance(types, str) else types
        if "type" not in s and depth > self.options.max_any_depth:
            types = [t for t in types if t not in ("array", "object")]
        return alt(self._typed(t, s, pointer, depth) for t in types)

    def _union(self, s: dict[str, Any], key: str, pointer: str, depth: int) -> Pattern:
        siblings = {k: v for k, v in s.items() if k != key}
        branches = []
        for i, b in enumerate(s[key]):
            at = f"{pointer}/{key}/{i}"
            branches.append(self.merger.merge_all([siblings, b], at) if siblings else self.resolve(b, at))
        if key == "oneOf":
            for i, x in enumerate(branches):
                for y in branches[i + 1:]:
                    if not provably_disjoint(x, y, self.resolve):
                        raise UnsupportedSchemaError("oneOf", pointer, "branches may overlap; use anyOf")
        return alt(self._value(b, f"{pointer}/{key}/{i}", depth) for i, b in enumerate(branches))

    def _literals(self, s: dict[str, Any], pointer: str, depth: int) -> Pattern:
        values = [s["const"]] if "const" in s else list(s["enum"])
        if "const" in s and "enum" in s:
            values = [v for v in s["enum"] if json_key(v) == json_key(s["const"])]
        rest = {k: v for k, v in s.items() if k not in ("enum", "const")}
        check = None
        if any(k not in ANNOTATIONS for k in rest):
            check = self._value(rest, pointer, depth)
        texts = []
        for v in values:
            text = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
            if check is not None and not re.fullmatch(check, text):
                continue  # the enum value violates a sibling keyword
            texts.append(escape(text))
        return alt(texts)

    def _typed(self, t: str, s: dict[str, Any], pointer: str, depth: int) -> Pattern:
        if t == "null":
            return "null"
        if t == "boolean":
            return "(true|false)"
        if t in ("integer", "number"):
            return self._number(t, s, pointer)
        if t == "string":
            return string_regex(s, pointer)
        if t == "array":
            return array_regex(self, s, pointer, depth)
        if t == "object":
            return object_regex(self, s, pointer, depth)
        raise InvalidSchemaError(f"unknown type {t!r} at {pointer}; use one of {', '.join(_ALL_TYPES)}, integer")

    def _number(self, t: str, s: dict[str, Any], pointer: str) -> Pattern:
        lower = _tighter(_bound(s, "minimum", True, pointer),
                         _bound(s, "exclusiveMinimum", False, pointer), max)
        upper = _tighter(_bound(s, "maximum", True, pointer),
                         _bound(s, "exclusiveMaximum", False, pointer), min)
        if "multipleOf" in s:
            m = s["multipleOf"]
            if not (t == "integer" and isinstance(m, (int, float)) and m > 0 and (1 / m) == int(1 / m)):
                raise UnsupportedSchemaError("multipleOf", pointer)
        if t == "integer":
            return integer_range(*integer_bounds(lower, upper))
        return number_range(lower, upper)


def _bound(s: dict[str, Any], key: str, inclusive: bool, pointer: str) -> Bound | None:
    if key not in s:
        return None
    v = s[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidSchemaError(f"{key} at {pointer} must be a number")
    return Bound(Decimal(repr(v)) if isinstance(v, float) else Decimal(v), inclusive)


def _tighter(a: Bound | None, b: Bound | None, pick: Any) -> Bound | None:
    if a is None or b is None:
        return a or b
    if a.value == b.value:
        return a if not a.inclusive else b  # exclusive is tighter
    return a if pick(a.value, b.value) == a.value else b
