"""Tool-call and reasoning parsers on recorded model outputs (each family's real format), plain
answers left alone, streaming deltas reassembling into the same calls, reasoning split apart
(tests/runtime/constrained/test_reasoning_constraint.py: the constraint after the thinking)."""

from __future__ import annotations

import json

import pytest
from sgl.runtime.server.openai_chat_output import DeltaSplitter, split_message
from sgl.runtime.server.openai_reasoning import get_reasoning_parser
from sgl.runtime.server.openai_tool_parsers import detect_parser, get_parser

ARGS = {"city": "Paris", "unit": "celsius"}
RECORDED = {
    "hermes": ('I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
               '\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"city": "Paris"}}\n</tool_call>'),
    "llama3": '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}; '
              '{"name": "get_time", "parameters": {"city": "Paris"}}',
    "mistral": '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, '
               '{"name": "get_time", "arguments": {"city": "Paris"}}]',
    "deepseekv3": ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                   '{"city": "Paris", "unit": "celsius"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function'
                   '<｜tool▁sep｜>get_time\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    "gpt-oss": ("<|channel|>analysis<|message|>User wants weather and time.<|end|><|start|>assistant<|channel|>"
                'commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris","unit":"celsius"}'
                "<|call|><|start|>assistant<|channel|>commentary to=functions.get_time <|constrain|>json"
                '<|message|>{"city":"Paris"}<|call|>'),
}
PLAIN = ["The weather in Paris is sunny.", '{"answer": 42} is the JSON you asked for.',
         "Use <b>bold</b> for emphasis."]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_parser_recognizes_its_format(name):
    content, calls = get_parser(name).parse(RECORDED[name])
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", ARGS), ("get_time", {"city": "Paris"})]
    assert content == ("I will check." if name == "hermes" else "")


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_parser_leaves_plain_answers_alone(name):
    for text in PLAIN:
        assert get_parser(name).parse(text) == (text, [])
    assert get_parser("gpt-oss").parse("<|channel|>final<|message|>Hi there<|return|>") == ("Hi there", [])


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_streamed_deltas_reassemble(name):
    text = RECORDED[name]
    splitter, deltas = DeltaSplitter(get_parser(name), None), []
    for end in range(1, len(text) + 1, 7):
        deltas += splitter.feed(text[:end])
    deltas += splitter.feed(text, final=True)
    calls: dict[int, dict] = {}
    for d in deltas:
        for c in d.get("tool_calls", []):
            p = calls.setdefault(c["index"], {"name": "", "arguments": ""})
            p["name"] += c.get("function", {}).get("name", "")
            p["arguments"] += c.get("function", {}).get("arguments", "")
    _, whole = get_parser(name).parse(text)
    assert [(p["name"], json.loads(p["arguments"])) for p in calls.values()] == \
        [(c.name, json.loads(c.arguments)) for c in whole]


def test_parser_is_chosen_from_the_template():
    assert detect_parser("{% if tools %}<tool_call>{% endif %}").name == "hermes"
    assert detect_parser("[AVAILABLE_TOOLS] [TOOL_CALLS]").name == "mistral"
    assert detect_parser("<|start_header_id|>ipython").name == "llama3"
    assert detect_parser("<|channel|>").name == "gpt-oss"
    assert detect_parser(None).name == "hermes"  # SmolLM2: our Hermes tool prompt


SCRIPTED = '<think>\nThe user wants a city. Paris {maybe}? Not </thin yet.\n</think>\n\n{"city":"Paris"}'


def test_reasoning_split_whole_and_streamed():
    message, has_calls = split_message(SCRIPTED, None, get_reasoning_parser("qwen3"))
    assert not has_calls
    assert message["reasoning_content"] == "The user wants a city. Paris {maybe}? Not </thin yet."
    assert json.loads(message["content"]) == {"city": "Paris"}
    splitter, thought, content = DeltaSplitter(None, get_reasoning_parser("qwen3")), "", ""
    for end in range(1, len(SCRIPTED) + 1, 3):
        for d in splitter.feed(SCRIPTED[:end], final=end >= len(SCRIPTED)):
            thought += d.get("reasoning_content", "")
            content += d.get("content", "")
    for d in splitter.feed(SCRIPTED, final=True):
        thought += d.get("reasoning_content", "")
        content += d.get("content", "")
    assert (thought, content) == (message["reasoning_content"], message["content"])
    assert split_message("Just an answer.", None, get_reasoning_parser("qwen3"))[0]["reasoning_content"] == ""
    r1 = get_reasoning_parser("deepseek-r1").split("thinking without the opening tag</think>answer")
    assert r1 == ("thinking without the opening tag", "answer")
