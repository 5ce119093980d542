"""Schema -> regex details: numeric ranges (exhaustive on small ranges), formats, whitespace."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from sgl.runtime.constrained import SchemaOptions, schema_to_regex
from sgl.runtime.constrained.json_strings import FORMATS


@pytest.mark.parametrize("lo,hi", [(0, None), (3, 27), (-15, 7), (None, -3), (-100, -20), (1, 1000)])
def test_integer_ranges_exact(lo, hi):
    schema = {"type": "integer", **({"minimum": lo} if lo is not None else {}),
              **({"maximum": hi} if hi is not None else {})}
    rx = schema_to_regex(schema)
    for x in range(-300, 1300):
        ok = (lo is None or x >= lo) and (hi is None or x <= hi)
        assert bool(re.fullmatch(rx, str(x))) == ok, x


@pytest.mark.parametrize("schema", [
    {"type": "number", "minimum": 1.1}, {"type": "number", "exclusiveMinimum": 1.1},
    {"type": "number", "maximum": 3.0, "exclusiveMinimum": -2.5}, {"type": "number", "exclusiveMaximum": 0},
    {"type": "number", "minimum": 0.3, "exclusiveMaximum": 0.35},
])
def test_number_ranges_exact_on_decimals(schema):
    rx = schema_to_regex(schema)
    for i in range(-40, 40):
        for frac in ["", "0", "09", "1", "10", "3", "35", "349", "5", "99"]:
            text = f"{i}.{frac}" if frac else str(i)
            v = Decimal(text)
            ok = all([
                v >= Decimal(str(schema.get("minimum", -1e9))), v <= Decimal(str(schema.get("maximum", 1e9))),
                v > Decimal(str(schema.get("exclusiveMinimum", -1e9))),
                v < Decimal(str(schema.get("exclusiveMaximum", 1e9))),
            ])
            assert bool(re.fullmatch(rx, text)) == ok, (schema, text)


@pytest.mark.parametrize("fmt,good,bad", [
    ("date", ["2024-02-29", "2023-12-31"], ["2023-02-29", "2023-04-31", "2023-1-01"]),
    ("time", ["08:30:06Z", "23:59:59.5+01:00"], ["24:00:00Z", "08:30:06"]),
    ("date-time", ["1963-06-19T08:30:06.283185Z"], ["1963-06-19 08:30:06Z"]),
    ("uuid", ["2eb8aa08-aa98-11ea-b4aa-73b441d16380"], ["2eb8aa08aa98-11ea-b4aa-73b441d16380"]),
    ("email", ["joe.bloggs@example.com"], ["@example.com", "a@b@c"]),
    ("uri", ["https://example.com/a?b=c#d"], ["no scheme", "//x"]),
])
def test_formats(fmt, good, bad):
    rx = FORMATS[fmt]
    assert all(re.fullmatch(rx, g) for g in good)
    assert not any(re.fullmatch(rx, b) for b in bad)


def test_compact_and_bounded_whitespace():
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
              "required": ["a"]}
    value = {"a": [1, 2]}
    assert re.fullmatch(schema_to_regex(schema), json.dumps(value, separators=(",", ":")))
    assert not re.fullmatch(schema_to_regex(schema), json.dumps(value))
    loose = schema_to_regex(schema, SchemaOptions(whitespace="[ ]?"))
    assert re.fullmatch(loose, json.dumps(value))
    assert not re.fullmatch(loose, '{"a":  [1]}')
    with pytest.raises(ValueError, match="bounded"):
        SchemaOptions(whitespace="[ \n]*")


def test_object_shapes():
    rx = schema_to_regex({"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "boolean"}},
                          "required": ["b"]})
    assert [bool(re.fullmatch(rx, t)) for t in ['{"b":true}', '{"a":null,"b":false}', '{"a":null}', "{}"]] == \
        [True, True, False, False]
    extra = schema_to_regex({"type": "object", "properties": {"a": {"type": "null"}},
                             "additionalProperties": {"type": "integer"}})
    assert re.fullmatch(extra, '{"a":null,"b":1}') and not re.fullmatch(extra, '{"a":null,"a":1}')
    assert not re.fullmatch(extra, '{"b":"x"}')


def test_enum_filtered_by_siblings_and_anyof():
    rx = schema_to_regex({"type": "string", "enum": ["a", 1, "b"], "maxLength": 1})
    assert re.fullmatch(rx, '"a"') and not re.fullmatch(rx, "1")
    rx = schema_to_regex({"anyOf": [{"type": "integer", "maximum": 0}, {"type": "string", "maxLength": 2}]})
    assert re.fullmatch(rx, "-4") and re.fullmatch(rx, '"ab"') and not re.fullmatch(rx, "3")
    rx = schema_to_regex({"oneOf": [{"properties": {"k": {"const": "x"}, "v": {"type": "integer"}}, "required": ["k"]},
                                    {"properties": {"k": {"const": "y"}}, "required": ["k"]}]})
    assert re.fullmatch(rx, '{"k":"x","v":3}') and re.fullmatch(rx, '{"k":"y"}')
