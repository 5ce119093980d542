"""Agent pipelines over real HTTP with the `openai` package: tool calling with tool_choice
(constrained arguments, streamed tool_calls deltas), EBNF grammars on both APIs, one constraint
per request."""

from __future__ import annotations

import ast
import json

import jsonschema
import openai
import pytest
import requests

WEATHER = {
    "type": "object",
    "properties": {
        "location": {"type": "object",
                     "properties": {"city": {"type": "string", "maxLength": 20},
                                    "country": {"enum": ["FR", "IT", "US"]}},
                     "required": ["city", "country"]},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["location", "unit", "days"],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a place",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
MESSAGES = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]
ARITHMETIC = 'root ::= expr\nexpr ::= term (("+" | "-") term)*\nterm ::= [0-9]+ | "(" expr ")"\n'


def check_call(call, schemas: dict[str, dict]) -> dict:
    assert call.type == "function" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, schemas[call.function.name])
    return args


def test_required_tool_call_is_valid_for_20_seeds(oai):
    r = oai.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS, tool_choice="required",
                                    parallel_tool_calls=False, temperature=1.0, seed=0, n=20, max_tokens=120)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    assert len(r.choices) == 20
    for c in r.choices:
        assert c.finish_reason == "tool_calls", c
        assert len(c.message.tool_calls) == 1
        check_call(c.message.tool_calls[0], schemas)


def test_named_function_and_streamed_deltas_reassemble(oai):
    kw = dict(model="m", messages=MESSAGES, tools=TOOLS, temperature=0.8, seed=3, max_tokens=120,
              tool_choice={"type": "function", "function": {"name": "get_weather"}})
    whole = oai.chat.completions.create(**kw).choices[0]
    assert whole.finish_reason == "tool_calls"
    (call,) = whole.message.tool_calls
    assert call.function.name == "get_weather"
    check_call(call, {"get_weather": WEATHER})
    parts: dict[int, dict] = {}
    finish = None
    for chunk in oai.chat.completions.create(**kw, stream=True):
        for ch in chunk.choices:
            finish = ch.finish_reason or finish
            for d in ch.delta.tool_calls or []:
                p = parts.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                p["id"] = d.id or p["id"]
                if d.function is not None:
                    p["name"] += d.function.name or ""
                    p["arguments"] += d.function.arguments or ""
    assert finish == "tool_calls"
    assert list(parts) == [0] and parts[0]["id"]
    assert (parts[0]["name"], json.loads(parts[0]["arguments"])) == ("get_weather", json.loads(call.function.arguments))


def test_tool_results_go_back_into_the_template(oai):
    history = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"location": {"city": "Paris", "country": "FR"},
                                                           "unit": "celsius", "days": 3})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    plain = oai.chat.completions.create(model="m", messages=MESSAGES, max_tokens=1, temperature=0)
    r = oai.chat.completions.create(model="m", messages=history, tools=TOOLS, tool_choice="none", max_tokens=16,
                                    temperature=0)
    assert r.usage.prompt_tokens > plain.usage.prompt_tokens + 20  # the call and its result are in the prompt
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason in ("stop", "length")


def test_bad_tool_choice_is_a_400_naming_the_field(oai):
    with pytest.raises(openai.BadRequestError, match="tool_choice.function.name"):
        oai.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS,
                                    tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError, match="`tool_choice` needs `tools`"):
        oai.chat.completions.create(model="m", messages=MESSAGES, tool_choice="required")


def test_ebnf_on_native_and_openai(server, oai):
    r = requests.post(server.url + "/generate", json={
        "text": "Compute: ", "sampling_params": {"max_new_tokens": 24, "temperature": 0, "ebnf": ARITHMETIC}},
        timeout=120)
    assert r.status_code == 200, r.text
    text = r.json()["text"]
    assert text and eval(text, {"__builtins__": {}}) is not None  # a valid sum of integers  # noqa: S307
    c = oai.completions.create(model="m", prompt="Compute: ", max_tokens=24, temperature=0,
                               extra_body={"ebnf": ARITHMETIC})
    assert c.choices[0].text == text
    forced = requests.post(server.url + "/generate", json={
        "text": "Q: ", "sampling_params": {"max_new_tokens": 24, "temperature": 0,
                                           "ebnf": 'root ::= "The result is " [0-9]+ "."'}}, timeout=120).json()
    assert forced["text"].startswith("The result is ") and forced["text"].endswith(".")
    assert forced["meta_info"].get("jump_forward_tokens", 0) >= 3  # the fixed words are jumped


def test_two_constraints_are_one_400_naming_both(server, oai):
    with pytest.raises(openai.BadRequestError, match="`regex` and `ebnf`"):
        oai.chat.completions.create(model="m", messages=MESSAGES, extra_body={"regex": "a+", "ebnf": ARITHMETIC})
    with pytest.raises(openai.BadRequestError, match="`ebnf` and `response_format`"):
        oai.chat.completions.create(model="m", messages=MESSAGES, response_format={"type": "json_object"},
                                    extra_body={"ebnf": ARITHMETIC})
    r = requests.post(server.url + "/generate", json={
        "text": "x", "sampling_params": {"regex": "a", "ebnf": ARITHMETIC}}, timeout=30)
    assert r.status_code == 400 and "regex and ebnf" in r.text
    bad = requests.post(server.url + "/generate", json={
        "text": "x", "sampling_params": {"ebnf": "root ::= missing"}}, timeout=30)
    assert bad.status_code == 400 and "ebnf" in bad.text


def test_structural_tag_response_format(oai):
    fmt = {"type": "structural_tag", "triggers": ["<function="],
           "structures": [{"begin": "<function=get_time>", "end": "</function>",
                           "schema": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                                      "required": ["city"]}}]}
    r = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "Say hi."}], max_tokens=24,
                                    temperature=0, response_format=fmt)
    assert r.choices[0].message.content  # free text (no trigger): unconstrained


# bounded forms of the arithmetic, JSON and program grammars of tests/runtime/constrained/test_ebnf_grammars.py
# (a small model continues an unbounded `expr` or `stmt+` up to max_new_tokens; program identifiers
# start with "v" so none is a Python keyword, the checker being ast.parse)
GEN_GRAMMARS = {
    "arithmetic": ('root ::= num (op num)? (op num)?\nnum ::= [1-9] [0-9]?\nop ::= " + " | " * " | " - "\n',
                   "Write a sum: ", lambda t: ast.parse(t, mode="eval")),
    "json": ('root ::= "{" pair ("," pair)? "}"\npair ::= string ":" value\n'
             'value ::= string | [0-9]{1,3} | "true" | "false"\nstring ::= "\\"" [a-z ]{1,12} "\\""\n',
             "A JSON object describing a cat: ", json.loads),
    "program": ('root ::= stmt stmt? stmt?\nstmt ::= ident " = " atom (" + " atom)? "\\n" | "print(" ident ")\\n"\n'
                'ident ::= "v" [a-z0-9]?\natom ::= ident | [0-9] [0-9]?\n', "A short program:\n", ast.parse),
}


@pytest.mark.parametrize("name", sorted(GEN_GRAMMARS))
def test_generation_under_each_gbnf_grammar_parses(server, name):
    grammar, prompt, parse = GEN_GRAMMARS[name]
    for sp in ({"temperature": 0}, {"temperature": 0.8, "seed": 1}):
        r = requests.post(server.url + "/generate", json={"text": prompt, "sampling_params": {
            "max_new_tokens": 64, "ebnf": grammar, **sp}}, timeout=120).json()
        assert r["meta_info"]["finish_reason"]["type"] == "stop", (name, r)
        parse(r["text"])
