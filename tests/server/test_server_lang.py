"""Language programs on `sgl.RuntimeEndpoint` (and `sgl.OpenAI`) against a real server process:
few-shot batch, roles, select, fork/join, streaming. Greedy decoding, tiny max_tokens."""

from __future__ import annotations

import pytest
import requests
import sgl

SHOTS = [("France", "Paris"), ("England", "London"), ("Australia", "Canberra"), ("South Korea", "Seoul")]
HEADER = "Answer with the capital city.\n\n" + "".join(
    f"Question: What is the capital of {c}?\nAnswer: {a}\n\n" for c, a in SHOTS)
COUNTRIES = ["Japan", "Italy", "Spain", "Egypt", "Germany", "Kenya", "Peru", "Canada"]


@sgl.function
def few_shot_qa(s, country):
    s += HEADER
    s += "Question: What is the capital of " + country + "?\nAnswer:"
    s += sgl.gen("answer", max_tokens=6, stop="\n")


@sgl.function
def chat(s):
    s += sgl.system("You are a helpful assistant. Answer briefly.")
    s += sgl.user("What is the capital of France?")
    s += sgl.assistant(sgl.gen("a1", max_tokens=12))
    s += sgl.user("And of Italy?")
    s += sgl.assistant(sgl.gen("a2", max_tokens=12))


@sgl.function
def capital(s, method):
    s += "The capital of France is " + sgl.select("city", choices=["Paris", "London", "Berlin"], choices_method=method)


@sgl.function
def tips(s):
    s += "Here are three short tips for staying healthy, each one sentence.\n"
    forks = s.fork(3)
    forks += lambda i: f"Tip {i + 1}:" + sgl.gen("tip", max_tokens=8, stop="\n")
    forks.join()
    s += "Summary:" + sgl.gen("summary", max_tokens=4)


@pytest.fixture(scope="module")
def endpoint(server):
    ep = sgl.RuntimeEndpoint(server.url)
    yield ep
    ep.shutdown()


def test_endpoint_uses_the_model_template_and_a_named_one(server, endpoint):
    assert endpoint.chat_template.name == "model"
    assert endpoint.chat_template.role_prefix_and_suffix["user"] == ("<|im_start|>user\n", "<|im_end|>\n")
    assert sgl.RuntimeEndpoint(server.url, chat_template_name="chatml").chat_template.name == "chatml"


def test_few_shot_batch_equals_native_greedy(server, endpoint):
    states = few_shot_qa.run_batch([{"country": c} for c in COUNTRIES], backend=endpoint, temperature=0)
    assert all(st.error() is None for st in states)
    answers = [st["answer"] for st in states]
    assert answers[0].strip() == "Tokyo" and answers[1].strip() == "Rome"
    texts = [HEADER + f"Question: What is the capital of {c}?\nAnswer:" for c in COUNTRIES]
    native = requests.post(server.url + "/generate", timeout=120, json={
        "text": texts, "sampling_params": {"max_new_tokens": 6, "stop": "\n", "temperature": 0}}).json()
    assert answers == [o["text"] for o in native]


def test_roles_multi_turn(endpoint):
    st = chat.run(backend=endpoint, temperature=0)
    assert st.error() is None
    assert [m["role"] for m in st.messages()] == ["system", "user", "assistant", "user", "assistant"]
    assert "Paris" in st["a1"] and st["a2"]
    assert st.text().count("<|im_start|>assistant\n") == 2 and st.text().endswith("<|im_end|>\n")


def test_select_with_each_method(endpoint):
    for method in (sgl.token_length_normalized, sgl.greedy_token_selection, sgl.unconditional_likelihood_normalized):
        st = capital.run(method=method, backend=endpoint)
        assert st.error() is None and st["city"] == "Paris", method
    rows = st.get_meta_info("city")["input_token_logprobs"]
    assert len(rows) == 3 and all(r[0] is not None for rs in rows for r in rs)


def test_fork_join_hits_the_committed_prefix(server, endpoint):
    requests.post(server.url + "/flush_cache", timeout=30)
    st = tips.run(backend=endpoint, temperature=0)
    assert st.error() is None and len(st["tip"]) == 3 and all(isinstance(t, str) for t in st["tip"])
    assert st["summary"] is not None
    assert server.server_info()["cached_tokens"] > 0


def test_streaming_pieces_concatenate(endpoint):
    st = chat.run(backend=endpoint, temperature=0, stream=True)
    pieces = list(st.text_iter("a1"))
    assert len(pieces) > 1 and "".join(pieces) == st["a1"]
    assert chat.run(backend=endpoint, temperature=0)["a1"] == st["a1"]


def test_server_errors_surface_as_program_errors(server, endpoint):
    @sgl.function
    def bad(s):
        s += "x " * 9000 + sgl.gen("too_long", max_tokens=2)

    st = bad.run(backend=endpoint)
    assert isinstance(st.error(), ValueError) and "context length" in str(st.error())
    assert server.wait_idle()["held_slots"] == 0  # (an earlier program may still be finishing)
    assert endpoint.get_server_info()["held_slots"] == 0
    assert endpoint.flush_cache() is True


def test_openai_backend_chat_program(server):
    backend = sgl.OpenAI("smollm", base_url=server.url + "/v1")
    st = chat.run(backend=backend, temperature=0)
    assert st.error() is None and "Paris" in st["a1"]
    streamed = chat.run(backend=backend, temperature=0, stream=True)
    assert "".join(streamed.text_iter("a1")) == st["a1"]
    st = capital.run(method=sgl.token_length_normalized, backend=backend)
    assert isinstance(st.error(), NotImplementedError)


@sgl.function
def structured(s):
    s += "Q: How many legs does a cat have?\nA: " + sgl.gen("legs", dtype=int, max_tokens=4) + "\n"
    s += "Q: What is the capital of France?\nA:" + sgl.gen("city", regex=" (Paris|London|Berlin)", max_tokens=6)


@pytest.mark.parametrize("kind", ["endpoint", "openai"])
def test_regex_and_dtype_pass_through(server, endpoint, kind):
    backend = endpoint if kind == "endpoint" else sgl.OpenAI("m", base_url=server.url + "/v1", is_chat_model=False)
    st = structured.run(backend=backend, temperature=0)
    assert st.error() is None, st.error()
    assert st["legs"].strip().lstrip("+-").isdigit() and st["city"] == " Paris"


@sgl.function
def grammar_and_reasoning(s):
    s += "Write a sum of two numbers: " + sgl.gen("sum", ebnf='root ::= num " + " num\nnum ::= [1-9] [0-9]?\n',
                                                  max_tokens=12) + "\n"
    s += "Now think, then name a city: " + sgl.separate_reasoning(
        sgl.gen("city", ebnf='root ::= "<think>" [a-z ]{3,20} "</think>" ("Paris" | "Rome")', max_tokens=32),
        model_type="deepseek-r1")


@pytest.mark.parametrize("kind", ["endpoint", "openai"])
def test_ebnf_and_separate_reasoning_over_http(server, endpoint, kind):
    backend = endpoint if kind == "endpoint" else sgl.OpenAI("m", base_url=server.url + "/v1", is_chat_model=False)
    st = grammar_and_reasoning.run(backend=backend, temperature=0)
    assert st.error() is None, st.error()
    left, right = st["sum"].split(" + ")
    assert left.isdigit() and right.isdigit()
    assert st["city"] in ("Paris", "Rome") and st["city_reasoning_content"].strip()
    assert st.text().endswith(": " + st["city"]) and "<think>" not in st.text()
