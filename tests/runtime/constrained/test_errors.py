"""Input errors name the field / keyword and the fix."""

from __future__ import annotations

import pytest
from sgl.runtime.constrained import (
    ConflictingConstraintsError,
    InvalidRegexError,
    InvalidSchemaError,
    UnsupportedSchemaError,
    grammar_spec,
    schema_to_regex,
)


@pytest.mark.parametrize("schema,keyword,pointer", [
    ({"type": "object", "properties": {"x": {"type": "object", "patternProperties": {"^a": {}},
                                                "additionalProperties": True}}}, "patternProperties", "#/properties/x"),
    ({"not": {"type": "string"}}, "not", "#"),
    ({"type": "array", "contains": {"type": "integer"}}, "contains", "#"),
    ({"type": "string", "format": "hostname"}, "format", "#"),
    ({"type": "number", "multipleOf": 3}, "multipleOf", "#"),
    ({"$ref": "https://example.com/s.json"}, "$ref", "#"),
    ({"$defs": {"n": {"properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}, "$ref", "#/properties/next"),
    ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, "oneOf", "#"),
    ({"type": "string", "pattern": "^a(?=b)"}, "pattern", "#/pattern"),
])
def test_unsupported_keywords_are_named(schema, keyword, pointer):
    with pytest.raises(UnsupportedSchemaError) as err:
        schema_to_regex(schema)
    assert err.value.keyword == keyword and err.value.pointer == pointer
    assert f"keyword {keyword!r} at {pointer} cannot be enforced" in str(err.value)
    assert "remove it" in str(err.value)


def test_invalid_inputs():
    with pytest.raises(InvalidSchemaError, match="not valid JSON"):
        grammar_spec(json_schema="{not json")
    with pytest.raises(InvalidSchemaError, match="json_schema must be"):
        grammar_spec(json_schema=42)
    with pytest.raises(InvalidRegexError, match="regex .* does not compile"):
        grammar_spec(regex="a(b")
    with pytest.raises(InvalidRegexError, match="lookaround"):
        grammar_spec(regex="a(?=b)")
    with pytest.raises(ConflictingConstraintsError, match="regex and json_schema"):
        grammar_spec(regex="a", json_schema={"type": "string"})
    with pytest.raises(ValueError, match="dtype"):
        grammar_spec(dtype=complex)
    assert all(issubclass(e, ValueError) for e in (InvalidSchemaError, InvalidRegexError,
                                                    UnsupportedSchemaError, ConflictingConstraintsError))


def test_schema_forms_and_annotations():
    pydantic = pytest.importorskip("pydantic")

    class Person(pydantic.BaseModel):
        name: str
        age: int

    as_model = schema_to_regex(Person)
    as_dict = schema_to_regex({"title": "Person", "type": "object", "description": "ignored",
                               "properties": {"name": {"title": "Name", "type": "string"},
                                              "age": {"title": "Age", "type": "integer"}},
                               "required": ["name", "age"]})
    assert as_model == as_dict
    assert grammar_spec(json_schema=Person).kind == "json_schema"
    assert grammar_spec(dtype=int).key == r"[-+]?[0-9]+[ \n]*"
    assert grammar_spec() is None


def test_compile_errors_surface_from_the_future(compiler):
    fut = compiler.compile_async("json_schema", {"not": {}})
    with pytest.raises(UnsupportedSchemaError):
        fut.result()
    assert compiler.compile_async("regex", "ab") is compiler.compile_async("regex", "ab")  # cached
