"""``allOf`` as one merged schema, and the disjointness proof behind ``oneOf``.

A regex cannot intersect two sub-languages cheaply, so ``allOf`` is enforced by merging the
branches' keywords into one schema (types intersect, bounds tighten, properties merge, ...).
A keyword that two branches constrain differently and that has no merge rule is rejected.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .errors import UnsupportedSchemaError

Schema = dict[str, Any]

ANNOTATIONS = frozenset({
    "title", "description", "$schema", "$id", "$anchor", "$dynamicAnchor", "examples", "default",
    "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "$vocabulary",
    "contentEncoding", "contentMediaType", "contentSchema", "discriminator",
})
_TAKE_MAX = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_TAKE_MIN = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_UNEVALUATED = ("unevaluatedProperties", "unevaluatedItems")
NEVER: Schema = {"enum": []}  # the schema no instance satisfies


def json_key(value: Any) -> str:
    """Canonical text for JSON equality (1 == 1.0, True != 1, key order ignored)."""

    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            return ["num", float(v) if float(v) != int(v) else int(v)] if v == v else ["nan"]
        if isinstance(v, list):
            return [norm(x) for x in v]
        return {k: norm(x) for k, x in v.items()}

    return json.dumps(norm(value), sort_keys=True)


def _all_of(a: Any, b: Any) -> Any:
    if a is True or a == {}:
        return b
    if b is True or b == {} or a == b:
        return a
    return {"allOf": [a, b]}


def _literal_set(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    return list(schema["enum"]) if "enum" in schema else None


class SchemaMerger:
    """Merges schemas; ``resolve`` turns a schema (bool, $ref) into a plain dict."""

    def __init__(self, resolve: Callable[[Any, str], Schema]) -> None:
        self.resolve = resolve

    def flatten(self, schema: Any, pointer: str) -> list[Schema]:
        """The plain-dict conjuncts of ``schema`` (its allOf and $ref expanded)."""
        s = self.resolve(schema, pointer)
        out: list[Schema] = []
        rest = {k: v for k, v in s.items() if k != "allOf"}
        out.append(rest)
        for i, branch in enumerate(s.get("allOf", [])):
            out.extend(self.flatten(branch, f"{pointer}/allOf/{i}"))
        return out

    def merge_all(self, schemas: list[Any], pointer: str) -> Schema:
        """One schema equivalent to all of ``schemas``; the first is the enclosing schema.

        NOTE: unevaluated* only sees what its own schema evaluated. It survives a merge only
        from the enclosing schema (whose in-place applicators are the other parts), or when no
        other part asserts anything.
        """
        parts = [p for i, s in enumerate(schemas)
                 for p in self.flatten(s, pointer if i == 0 else f"{pointer}/allOf/{i - 1}")]
        for i, part in enumerate(parts[1:], start=1):
            for k in _UNEVALUATED:
                others = [p for j, p in enumerate(parts) if j != i]
                if k in part and any(key not in ANNOTATIONS for p in others for key in p):
                    raise UnsupportedSchemaError(k, pointer, "inside allOf/$ref/anyOf next to other keywords")
        merged: Schema = {}
        for part in parts:
            merged = self.merge(merged, part, pointer)
        return merged

    def merge(self, a: Schema, b: Schema, pointer: str) -> Schema:  # noqa: C901
        a, b = _const_to_enum(a), _const_to_enum(b)
        out = dict(a)
        for key, bv in b.items():
            if key not in a:
                out[key] = bv
            elif key in ANNOTATIONS or a[key] == bv:
                continue
            elif key == "type":
                out[key] = _merge_types(a[key], bv)
            elif key in _TAKE_MAX:
                out[key] = max(a[key], bv)
            elif key in _TAKE_MIN:
                out[key] = min(a[key], bv)
            elif key == "required":
                out[key] = list(dict.fromkeys([*a[key], *bv]))
            elif key == "enum":
                keys = {json_key(v) for v in bv}
                out[key] = [v for v in a[key] if json_key(v) in keys]
            elif key == "anyOf":
                out[key] = [{"allOf": [x, y]} for x in a[key] for y in bv]
            elif key == "items":
                out[key] = _all_of(a[key], bv)
            elif key in ("properties", "prefixItems", "additionalProperties"):
                continue  # merged below, together
            else:
                raise UnsupportedSchemaError(key, pointer, "constrained differently by two allOf branches")
        if "type" in out and out["type"] == []:
            return dict(NEVER)
        _merge_objects(a, b, out, pointer)
        _merge_arrays(a, b, out)
        return out


def _const_to_enum(s: Schema) -> Schema:
    if "const" not in s:
        return s
    out = {k: v for k, v in s.items() if k != "const"}
    if "enum" in s:
        key = json_key(s["const"])
        out["enum"] = [v for v in s["enum"] if json_key(v) == key]
    else:
        out["enum"] = [s["const"]]
    return out


def _types(t: Any) -> set[str]:
    return {t} if isinstance(t, str) else set(t)


def _merge_types(a: Any, b: Any) -> list[str]:
    ta, tb = _types(a), _types(b)
    both = ta & tb
    if "number" in ta and "integer" in tb or "integer" in ta and "number" in tb:
        both.add("integer")
    return sorted(both)


def _merge_objects(a: Schema, b: Schema, out: Schema, pointer: str) -> None:
    """Properties of both; a name one side does not list meets that side's additionalProperties."""
    if not any(k in a or k in b for k in ("properties", "additionalProperties")):
        return
    if ("patternProperties" in a or "patternProperties" in b) and (
        "additionalProperties" in a or "additionalProperties" in b
    ):
        raise UnsupportedSchemaError("patternProperties", pointer, "with additionalProperties in allOf")
    pa, pb = a.get("properties", {}), b.get("properties", {})
    props: dict[str, Any] = {}
    for name in dict.fromkeys([*pa, *pb]):
        sa = pa.get(name, a.get("additionalProperties", True))
        sb = pb.get(name, b.get("additionalProperties", True))
        props[name] = _all_of(sa, sb)
    if props:
        out["properties"] = props
    if "additionalProperties" in a or "additionalProperties" in b:
        out["additionalProperties"] = _all_of(
            a.get("additionalProperties", True), b.get("additionalProperties", True)
        )


def _merge_arrays(a: Schema, b: Schema, out: Schema) -> None:
    """Element i meets a's prefixItems[i] (or a's items past a's prefix) and b's likewise."""
    if "prefixItems" not in a and "prefixItems" not in b:
        return
    pa, pb = a.get("prefixItems", []), b.get("prefixItems", [])
    prefix = []
    for i in range(max(len(pa), len(pb))):
        sa = pa[i] if i < len(pa) else a.get("items", True)
        sb = pb[i] if i < len(pb) else b.get("items", True)
        prefix.append(_all_of(sa, sb))
    out["prefixItems"] = prefix


# --- oneOf ------------------------------------------------------------------------------------
_ALL_TYPES = frozenset({"null", "boolean", "number", "string", "array", "object"})


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(v)]


def possible_types(s: Schema) -> frozenset[str]:
    """JSON types ``s`` can match (integer counted as number)."""
    types = _ALL_TYPES
    if "type" in s:
        types = frozenset("number" if t == "integer" else t for t in _types(s["type"]))
    lits = _literal_set(s)
    if lits is not None:
        types = types & frozenset(_json_type(v) for v in lits)
    return types


def _disjoint_literals(x: list[Any] | None, y: list[Any] | None) -> bool:
    return x is not None and y is not None and not ({json_key(v) for v in x} & {json_key(v) for v in y})


def provably_disjoint(x: Schema, y: Schema, resolve: Callable[[Any, str], Schema]) -> bool:
    """True if no instance can satisfy both (by type, literal set, or a required discriminator)."""
    if not (possible_types(x) & possible_types(y)):
        return True
    if _disjoint_literals(_literal_set(x), _literal_set(y)):
        return True
    px, py = x.get("properties", {}), y.get("properties", {})
    for name in set(x.get("required", [])) & set(y.get("required", [])):
        if name in px and name in py:
            sx, sy = resolve(px[name], "#"), resolve(py[name], "#")
            if _disjoint_literals(_literal_set(sx), _literal_set(sy)):
                return True
    return False
