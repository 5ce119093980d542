"""tool_choice "required" for formats whose markers are special tokens (Mistral `[TOOL_CALLS]`,
DeepSeek V3 `<｜tool▁call▁begin｜>`..., harmony `<|channel|>`...), over HTTP with the `openai`
client: a tiny checkpoint whose tokenizer holds those markers as special tokens, scripted
(scripted_model.py) to write a call in the format with arguments outside the schema. The
constraint asks for each marker as its one token and for the arguments under the schema."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from conftest import free_port
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from scripted_model import scripted_engine, serve
from sgl.runtime.server.context import ServerSettings
from sgl.runtime.server.openai_tool_constraint import calls_constraint, single_token_id
from sgl.runtime.server.openai_tool_parsers import get_parser

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
          "properties": {"city": {"enum": ["Paris", "Rome"]}, "unit": {"enum": ["celsius", "fahrenheit"]}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}},
         {"type": "function", "function": {"name": "get_time", "parameters": {
             "type": "object", "additionalProperties": False, "required": ["city"],
             "properties": {"city": {"enum": ["Paris", "Rome"]}}}}}]
BAD = '{"city":"Berlin","unit":"kelvin"}'  # what the scripted model wants: outside the schema
GOOD = ('{"city":"Rome","unit":"celsius"}', '{"city":"Paris"}')
SCRIPTS = {  # (one call with BAD arguments, two valid calls), each as the format writes them
    "mistral": ('[TOOL_CALLS][{"name":"get_weather","arguments":' + BAD + "}]",
                '[TOOL_CALLS][{"name":"get_weather","arguments":' + GOOD[0] + '}, {"name":"get_time","arguments":'
                + GOOD[1] + "}]"),
    "deepseekv3": ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" + BAD
                   + "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
                   "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" + GOOD[0]
                   + "\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n" + GOOD[1]
                   + "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
    "gpt-oss": ("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" + BAD + "<|call|>",
                "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" + GOOD[0]
                + "<|call|><|start|>assistant<|channel|>commentary to=functions.get_time <|constrain|>json"
                + "<|message|>" + GOOD[1] + "<|call|>"),
}
MESSAGES = [{"role": "user", "content": "Weather in Rome?"}]


@pytest.fixture(scope="module")
def marker_model(tmp_path_factory, default_tokenizer_folder) -> str:
    """A tiny random Llama whose tokenizer (the default model's) has every format's markers as
    special tokens, the vocabulary grown to hold them."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_folder)
    markers = sorted({m for name in SCRIPTS for m in get_parser(name).markers})
    tok.add_special_tokens({"additional_special_tokens": markers})
    tok_folder = str(tmp_path_factory.mktemp("marker_tokenizer"))
    tok.save_pretrained(tok_folder)
    config = tiny_llama_config("plain")
    config.vocab_size = len(tok)
    return save_tiny_checkpoint(config, str(tmp_path_factory.mktemp("marker_model")), tok_folder)


@pytest.fixture(scope="module")
def scripted(marker_model):
    with scripted_engine(marker_model) as model:  # one engine; an app per parser
        yield model


def test_markers_that_are_tokens_make_a_lark_grammar(marker_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(marker_model)
    kind, grammar = calls_constraint(TOOLS[:1], False, get_parser("mistral"), single_token_id(tok))
    tid = tok.convert_tokens_to_ids("[TOOL_CALLS]")
    assert kind == "ebnf" and grammar.startswith(f'start: <[{tid}]> "["'), grammar
    plain = calls_constraint(TOOLS[:1], False, get_parser("mistral"), lambda text: None)  # no such token
    assert plain[0] == "regex" and plain[1].startswith(r"\[TOOL_CALLS\]\[")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_required_call_with_special_token_markers(scripted, name):
    bad, good, model = *SCRIPTS[name], scripted
    with serve(model.engine, ServerSettings(tool_call_parser=name), free_port()) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)

        def ask(script: str, **kw):
            model.script = script
            return client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS, temperature=0,
                                                  max_tokens=120, **kw).choices[0]

        free = ask(bad)  # auto: the parser reads the scripted call, arguments as written
        assert free.finish_reason == "tool_calls", free
        assert [(c.function.name, c.function.arguments) for c in free.message.tool_calls] == [
            ("get_weather", json.dumps(json.loads(BAD)))]
        for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
            c = ask(bad, tool_choice=choice, parallel_tool_calls=False)
            assert c.finish_reason == "tool_calls", c
            (call,) = c.message.tool_calls
            assert call.function.name == "get_weather"
            jsonschema.validate(json.loads(call.function.arguments), SCHEMA)  # Berlin/kelvin refused
        both = ask(good, tool_choice="required")  # parallel: both valid calls, the markers as tokens
        assert [(t.function.name, json.loads(t.function.arguments)) for t in both.message.tool_calls] == [
            ("get_weather", json.loads(GOOD[0])), ("get_time", json.loads(GOOD[1]))]
        r = client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS, temperature=0, max_tokens=120,
                                           tool_choice="required")
        n = len(model.tokenizer.encode(good, add_special_tokens=False))  # each marker one token
        assert r.usage.completion_tokens in (n, n + 1)  # + EOS where the grammar could go on (gpt-oss)
