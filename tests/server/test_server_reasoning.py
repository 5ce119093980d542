"""Reasoning and structural tags over real HTTP with the `openai` client, on a scripted model
(scripted_model.py: a tiny checkpoint whose top token follows a fixed text) behind a server with
`--reasoning-parser qwen3`: the thinking goes into `reasoning_content` (streamed too), the JSON
constraint starts after `</think>`, and a structural tag constrains only from its trigger to its
end tag."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from conftest import free_port
from scripted_model import scripted_server
from sgl.runtime.server.context import ServerSettings

CITY = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"],
        "additionalProperties": False}
THOUGHT = 'The user wants a city. {Not JSON} here, and "Berlin" comes to mind.'
REASONING_SCRIPT = f'<think>\n{THOUGHT}\n</think>\n\n{{"city":"Berlin"}}'
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}
TAG = {"type": "structural_tag", "triggers": ["<function="],
       "structures": [{"begin": "<function=get_time>", "end": "</function>", "schema": CITY}]}
MESSAGES = [{"role": "user", "content": "Pick a city."}]


@pytest.fixture(scope="module")
def scripted(tiny_model):
    with scripted_server(tiny_model, ServerSettings(reasoning_parser="qwen3"), free_port()) as (url, model):
        client = openai.OpenAI(base_url=url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
        yield client, model


def chat(client, **kw):
    return client.chat.completions.create(model="m", messages=MESSAGES, temperature=0, max_tokens=80, **kw)


def streamed(client, **kw) -> tuple[str, str, str | None]:
    """(reasoning_content, content, finish_reason) put back together from the stream's deltas."""
    thought, content, finish = "", "", None
    for chunk in chat(client, stream=True, **kw):
        for ch in chunk.choices:
            thought += getattr(ch.delta, "reasoning_content", None) or ""
            content += ch.delta.content or ""
            finish = ch.finish_reason or finish
    return thought, content, finish


def test_thinking_goes_into_reasoning_content(scripted):
    client, model = scripted
    model.script = REASONING_SCRIPT
    m = chat(client).choices[0].message
    assert (m.reasoning_content, m.content) == (THOUGHT, '{"city":"Berlin"}')  # unconstrained: the script
    raw = chat(client, extra_body={"separate_reasoning": False}).choices[0].message
    assert raw.content == REASONING_SCRIPT and getattr(raw, "reasoning_content", None) is None
    model.script = "Paris, no thinking."
    plain = chat(client).choices[0].message
    assert (plain.reasoning_content, plain.content) == ("", "Paris, no thinking.")


def test_json_constraint_applies_after_the_thinking(scripted):
    client, model = scripted
    model.script = REASONING_SCRIPT
    c = chat(client, response_format=JSON_FORMAT).choices[0]
    assert c.message.reasoning_content == THOUGHT  # free text with braces and quotes: not constrained
    jsonschema.validate(json.loads(c.message.content), CITY)  # "Berlin" was refused after </think>
    assert json.loads(c.message.content)["city"] in ("Paris", "Rome") and c.finish_reason == "stop"
    thought, content, finish = streamed(client, response_format=JSON_FORMAT)
    assert (thought, content, finish) == (THOUGHT, c.message.content, "stop")


def test_streamed_reasoning_reassembles(scripted):
    client, model = scripted
    model.script = REASONING_SCRIPT
    assert streamed(client) == (THOUGHT, '{"city":"Berlin"}', "stop")


def test_structural_tag_constrains_from_the_trigger_to_the_end_tag(scripted):
    client, model = scripted
    model.script = 'Sure. <function=get_time>{"city":"Rome"}</function> Done, {free} again.'
    ok = chat(client, response_format=TAG).choices[0].message.content
    assert ok == model.script  # valid inside the tag, free text before and after it
    model.script = 'Sure. <function=get_time>{"city":"Berlin"}</function> Done.'
    assert chat(client).choices[0].message.content == model.script  # no constraint: the script
    out = chat(client, response_format=TAG).choices[0].message.content
    head, begin = "Sure. ", "<function=get_time>"
    assert out.startswith(head + begin) and "</function>" in out, out
    args = out[len(head + begin):out.index("</function>")]
    jsonschema.validate(json.loads(args), CITY)  # "Berlin" refused inside the tag
