"""The OpenAI-compatible routes through the `openai` package, against a real server process."""

from __future__ import annotations

import json

import openai
import pytest
import requests

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_lists_the_served_model(server, oai):
    models = oai.models.list().data
    assert len(models) == 1 and models[0].id.endswith(".gguf")


def test_chat_completion_uses_the_model_chat_template(server, oai):
    resp = oai.chat.completions.create(model="any", messages=QUESTION, max_tokens=12, temperature=0)
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and "Paris" in choice.message.content
    assert resp.object == "chat.completion" and choice.finish_reason in ("stop", "length")
    # the same text as the native API on the template-rendered prompt
    info = requests.get(server.url + "/get_model_info", timeout=30).json()
    assert "<|im_start|>" in info["chat_template"]
    prompt = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" \
             "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    native = requests.post(server.url + "/generate", timeout=60, json={
        "text": prompt, "sampling_params": {"max_new_tokens": 12, "temperature": 0}}).json()
    assert native["text"] == choice.message.content
    assert resp.usage.prompt_tokens == native["meta_info"]["prompt_tokens"]
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_max_completion_tokens_stop_and_seed(oai):
    resp = oai.chat.completions.create(model="m", messages=QUESTION, max_completion_tokens=3, temperature=0)
    assert resp.usage.completion_tokens == 3 and resp.choices[0].finish_reason == "length"
    resp = oai.chat.completions.create(model="m", messages=QUESTION, max_tokens=20, temperature=0, stop=["Paris"])
    assert "Paris" not in resp.choices[0].message.content and resp.choices[0].finish_reason == "stop"
    a, b = (oai.completions.create(model="m", prompt="Once upon a time", max_tokens=8, temperature=1.0, seed=7)
            for _ in range(2))
    assert a.choices[0].text == b.choices[0].text


def test_completions_batch_n_and_logprobs(oai):
    resp = oai.completions.create(model="m", prompt=["The capital of France is", "The capital of Italy is"],
                                  max_tokens=4, temperature=0, n=2, logprobs=2)
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert "Paris" in resp.choices[0].text and resp.choices[0].text == resp.choices[1].text
    assert "Rome" in resp.choices[2].text
    lp = resp.choices[0].logprobs
    assert lp.tokens[0] == " Paris" and len(lp.token_logprobs) == 4 and len(lp.top_logprobs[0]) == 2
    assert lp.text_offset[:2] == [0, len(" Paris")]
    assert resp.usage.prompt_tokens == 10  # once per prompt, not per choice


def test_chat_n_and_top_logprobs(oai):
    resp = oai.chat.completions.create(model="m", messages=QUESTION, max_tokens=6, temperature=0.8, n=2, seed=3,
                                       logprobs=True, top_logprobs=3)
    assert len(resp.choices) == 2
    content = resp.choices[0].logprobs.content
    assert 1 <= len(content) <= 6 and content[0].token == resp.choices[0].message.content[:len(content[0].token)]
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)


def test_chat_streaming_with_usage(oai):
    whole = oai.chat.completions.create(model="m", messages=QUESTION, max_tokens=10, temperature=0)
    chunks = list(oai.chat.completions.create(model="m", messages=QUESTION, max_tokens=10, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completion_streaming_n2(oai):
    chunks = list(oai.completions.create(model="m", prompt="The capital of France is", max_tokens=5,
                                         temperature=0, n=2, stream=True))
    texts = {0: "", 1: ""}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.text
    assert texts[0] == texts[1] and "Paris" in texts[0]


def test_extra_body_sampling_fields_pass_through(oai):
    resp = oai.completions.create(model="m", prompt="The capital of France is", max_tokens=4, temperature=0.7,
                                  extra_body={"top_k": 1, "min_p": 0.1, "repetition_penalty": 1.1})
    greedy = oai.completions.create(model="m", prompt="The capital of France is", max_tokens=4, temperature=0,
                                    extra_body={"repetition_penalty": 1.1})
    assert resp.choices[0].text == greedy.choices[0].text  # top_k=1 is greedy: it reached the sampler
    with pytest.raises(openai.BadRequestError, match="top_k"):
        oai.completions.create(model="m", prompt="x", max_tokens=2, extra_body={"top_k": 0})


def test_errors_have_openai_shape(server, oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="m", messages=QUESTION, temperature=5)
    assert e.value.status_code == 400
    r = requests.post(server.url + "/v1/chat/completions", timeout=30,
                      json={"messages": QUESTION, "max_tokens": "ten"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "max_tokens" and err["type"] == "invalid_request_error"
    assert set(err) == {"message", "type", "param", "code"}
    # unknown OpenAI fields are ignored, known ones are type-checked
    r = requests.post(server.url + "/v1/chat/completions", timeout=60,
                      json={"messages": QUESTION, "max_tokens": 2, "parallel_tool_calls": True, "metadata": {}})
    assert r.status_code == 200


def test_regex_passes_through_as_extra_body(oai):
    resp = oai.completions.create(model="m", prompt="The capital of France is", max_tokens=8, temperature=0,
                                  extra_body={"regex": " (Paris|London|Berlin)"})
    assert resp.choices[0].text == " Paris"
    with pytest.raises(openai.BadRequestError, match="regex"):
        oai.completions.create(model="m", prompt="x", max_tokens=2, extra_body={"regex": "("})


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize("fmt", [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "capital", "schema": SCHEMA}},
])
def test_response_format_constrains_output_to_json(oai, fmt):
    resp = oai.chat.completions.create(model="m", messages=QUESTION, max_tokens=48, temperature=0,
                                       response_format=fmt)
    value = json.loads(resp.choices[0].message.content)
    assert isinstance(value, dict)
    if fmt["type"] == "json_schema":
        import jsonschema

        jsonschema.validate(value, SCHEMA)
