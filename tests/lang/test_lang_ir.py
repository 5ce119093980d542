"""Constructors validate at once and name the argument; nodes are frozen."""

from __future__ import annotations

import dataclasses
import json

import pydantic
import pytest
import sgl
from sgl.ir import REGEX_INT, ConstantText, ExprList, Gen, SamplingParams, Select


def test_public_names():
    names = """function gen gen_int gen_string select image video system user assistant
    system_begin system_end user_begin user_end assistant_begin assistant_end set_default_backend
    flush_cache get_server_info Runtime RuntimeEndpoint OpenAI token_length_normalized
    greedy_token_selection unconditional_likelihood_normalized global_config""".split()
    for n in names:
        assert hasattr(sgl, n), n
    assert "Engine" in sgl.__all__


def test_gen_holds_params_and_is_frozen():
    g = sgl.gen("x", max_tokens=5, stop="\n", temperature=0)
    assert isinstance(g, Gen) and g.name == "x"
    assert g.sampling.max_new_tokens == 5 and g.sampling.stop == ("\n",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.name = "y"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"regex": "[a-"}, "regex"),
        ({"json_schema": "{not json"}, "json_schema"),
        ({"dtype": complex}, "dtype"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"top_p": 0}, "top_p"),
        ({"stop_regex": "(unclosed"}, "stop_regex"),
        ({"regex": "a", "dtype": int}, "at most one"),
    ],
)
def test_gen_validates(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sgl.gen("x", **kwargs)


def test_json_schema_forms():
    class M(pydantic.BaseModel):
        a: int

    assert json.loads(sgl.gen("x", json_schema=M).sampling.json_schema)["properties"]["a"]["type"] == "integer"
    assert json.loads(sgl.gen("x", json_schema={"type": "object"}).sampling.json_schema) == {"type": "object"}
    assert sgl.gen("x", json_schema='{"type": "string"}').sampling.json_schema == '{"type": "string"}'


def test_dtype_resolves_to_builtin_regex():
    p = sgl.gen_int("n").sampling.resolve_dtype()
    assert p.regex == REGEX_INT and p.stop == (" ", "\n")
    assert sgl.gen_string("s").sampling.dtype is str


def test_select_validates():
    with pytest.raises(ValueError, match="choices"):
        sgl.select("x")
    with pytest.raises(ValueError, match="choices"):
        sgl.select("x", choices=[])
    with pytest.raises(TypeError, match="choice"):
        sgl.select("x", choices=["a", 3])
    with pytest.raises(ValueError, match="temperature"):
        sgl.select("x", choices=["a"], temperature=0.7)
    s = sgl.gen("x", choices=["a", "b"])
    assert isinstance(s, Select) and s.choices == ("a", "b") and s.choices_method is sgl.token_length_normalized


def test_image_and_video_validate(tmp_path):
    with pytest.raises(FileNotFoundError, match="image"):
        sgl.image(str(tmp_path / "missing.png"))
    with pytest.raises(TypeError, match="image"):
        sgl.image(3)
    assert sgl.image(b"\x89PNG").source == b"\x89PNG"
    assert sgl.image("https://example.com/a.png").source.startswith("https://")
    f = tmp_path / "v.mp4"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="num_frames"):
        sgl.video(str(f), 0)
    assert sgl.video(str(f), 4).num_frames == 4


def test_roles_and_concatenation():
    e = sgl.user("hi " + sgl.gen("a"))
    assert isinstance(e, ExprList)
    kinds = [type(x).__name__ for x in e.items]
    assert kinds == ["RoleBegin", "ExprList", "RoleEnd"]
    assert isinstance(e.items[1].items[0], ConstantText)
    assert sgl.user_begin().role == "user" and sgl.assistant_end().role == "assistant"


def test_function_requires_s():
    with pytest.raises(TypeError, match="'s'"):
        sgl.function(lambda x: None)


def test_sampling_override_keeps_defaults():
    base = SamplingParams(max_new_tokens=128, temperature=1.0, stop=())
    merged = base.override(SamplingParams(max_new_tokens=4))
    assert merged.max_new_tokens == 4 and merged.temperature == 1.0
    assert merged.to_engine() == {"max_new_tokens": 4, "temperature": 1.0, "stop": []}
