"""Agent features in the language: ``gen(ebnf=...)`` through the backends, and
``sgl.separate_reasoning`` (SGLang's), on the real engine with the default model; the OpenAI
backend's constraints against OpenAI itself (checked before any request is sent)."""

from __future__ import annotations

import ast
import json

import pytest
import sgl
from lang_mock_backend import MockBackend

SUM = 'root ::= num " + " num\nnum ::= [1-9] [0-9]?\n'
# a reasoning model's output, forced by a grammar so the small model writes one deterministically
THINKING = 'root ::= "<think>" [a-z ]{3,24} "</think>\\n" answer\nanswer ::= "Paris" | "Rome"\n'


@sgl.function
def arithmetic(s):
    s += "Write a sum of two numbers: " + sgl.gen("sum", ebnf=SUM, max_tokens=16)


@sgl.function
def reasoning_qa(s, model_type="qwen3"):
    s += sgl.user("What is the capital of France? Think first.")
    s += sgl.assistant(sgl.separate_reasoning(sgl.gen("answer", ebnf=THINKING, max_tokens=40), model_type=model_type))


def test_gen_ebnf_on_the_engine(runtime):
    st = arithmetic.run(backend=runtime, temperature=0)
    assert st.error() is None, st.error()
    ast.parse(st["sum"], mode="eval")  # the grammar's sum
    left, right = st["sum"].split(" + ")
    assert left.isdigit() and right.isdigit()
    (call,) = runtime.engine.calls
    assert call["kwargs"]["sampling_params"]["ebnf"] == SUM  # the grammar went to the engine as SGLang's field


def test_gen_ebnf_is_checked_at_construction():
    with pytest.raises(ValueError, match="ebnf.*does not parse"):
        sgl.gen("x", ebnf="root ::= missing")
    with pytest.raises(TypeError, match="ebnf"):
        sgl.gen("x", ebnf="  ")
    with pytest.raises(ValueError, match="at most one of regex=, json_schema=, ebnf="):
        sgl.gen("x", ebnf=SUM, regex="a+")


def test_separate_reasoning_on_the_engine(runtime):
    for stream in (False, True):
        st = reasoning_qa.run(backend=runtime, temperature=0, stream=stream)
        if stream:
            streamed = "".join(st.text_iter("answer"))
            assert streamed.startswith("<think>")  # the stream shows the thinking as it comes
        assert st.error() is None, st.error()
        assert st["answer"] in ("Paris", "Rome")
        thought = st["answer_reasoning_content"]
        assert thought and "<think>" not in thought and "</think>" not in thought
        # the state's text and the assistant message keep only the answer
        assert "<think>" not in st.text() and st["answer"] in st.text()
        assert st.messages()[-1] == {"role": "assistant", "content": st["answer"]}


def test_separate_reasoning_of_scripted_outputs():
    backend = MockBackend()

    @sgl.function
    def prog(s, model_type):
        s += "Q: a city?\nA:" + sgl.separate_reasoning(sgl.gen("a", max_tokens=3), model_type=model_type)

    st = prog.run(model_type="deepseek-r1", backend=backend)
    # deepseek-r1: the template opened the thinking, so an output without </think> is all thinking
    assert st["a"] == "" and st["a_reasoning_content"].startswith("ans")
    st = prog.run(model_type="qwen3", backend=backend)  # qwen3: no <think>, no thinking
    assert st["a_reasoning_content"] == "" and st["a"].startswith(" ans") and st.text().endswith(st["a"])


def test_separate_reasoning_arguments():
    with pytest.raises(ValueError, match="model_type"):
        sgl.separate_reasoning(sgl.gen("a"))
    with pytest.raises(ValueError, match="'nope' is not known; use one of"):
        sgl.separate_reasoning(sgl.gen("a"), model_type="nope")
    with pytest.raises(ValueError, match="has no name"):
        sgl.separate_reasoning(sgl.gen(), model_type="qwen3")
    expr = sgl.separate_reasoning(sgl.gen("a"), model_type="QWEN3")  # names are case-insensitive, as SGLang's
    assert expr.items[1].name == "a_reasoning_content"
    from sgl.lang.ir import SglSeparateReasoning

    assert isinstance(expr.items[1], SglSeparateReasoning)


class _NoNetwork(sgl.OpenAI):
    """sgl.OpenAI against api.openai.com, recording the request instead of sending it."""

    def _create(self, kwargs):
        self.sent = kwargs
        raise ConnectionError("no network in tests")


def test_openai_itself_gets_a_clear_error_for_grammars_and_a_response_format_for_schemas():
    backend = _NoNetwork("gpt-4o-mini", api_key="sk-test")
    assert backend.is_openai

    @sgl.function
    def prog(s, kind):
        s += sgl.user("A city?")
        gen = {"ebnf": sgl.gen("a", ebnf=SUM), "regex": sgl.gen("a", regex="(Paris|Rome)"),
               "json_schema": sgl.gen("a", json_schema={"type": "object"})}[kind]
        s += sgl.assistant(gen)

    for kind in ("ebnf", "regex"):
        st = prog.run(kind=kind, backend=backend)
        assert isinstance(st.error(), ValueError) and f"OpenAI's API has no {kind} constraint" in str(st.error())
    st = prog.run(kind="json_schema", backend=backend)
    assert isinstance(st.error(), ConnectionError)  # built, then sent
    assert backend.sent["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert "extra_body" not in backend.sent
    local = _NoNetwork("m", base_url="http://127.0.0.1:1/v1")
    assert not local.is_openai
    st = prog.run(kind="ebnf", backend=local)
    assert isinstance(st.error(), ConnectionError), st.error()
    assert local.sent["extra_body"] == {"ebnf": SUM}  # our server takes it as an extra field
    json.dumps(local.sent["messages"])
