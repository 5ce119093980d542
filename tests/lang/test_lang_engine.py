"""The language on the real engine with the default model (SmolLM2-135M-Instruct).

Greedy decoding and tiny max_tokens keep these fast and deterministic.
"""

from __future__ import annotations

import pytest
import sgl

COUNTRIES = """Japan Germany Italy Spain Canada Egypt Kenya Peru Chile Norway Sweden Finland
Poland Greece Turkey India China Brazil Mexico Cuba Ireland Portugal Austria Hungary Russia
Iran Iraq Nepal Vietnam Thailand Argentina Belgium""".split()
SHOTS = [("France", "Paris"), ("England", "London"), ("Australia", "Canberra"),
         ("Switzerland", "Bern"), ("South Korea", "Seoul")]  # fmt: skip
HEADER = "Answer with the capital city.\n\n" + "".join(
    f"Question: What is the capital of {c}?\nAnswer: {a}\n\n" for c, a in SHOTS
)


@sgl.function
def few_shot_qa(s, country):
    s += HEADER
    s += "Question: What is the capital of " + country + "?\nAnswer:"
    s += sgl.gen("answer", max_tokens=6, stop="\n")


def test_select_picks_paris_with_each_method(runtime):
    @sgl.function
    def capital(s, method):
        s += "The capital of France is " + sgl.select("city", choices=["Paris", "London", "Berlin"], choices_method=method)

    for method in (sgl.token_length_normalized, sgl.greedy_token_selection, sgl.unconditional_likelihood_normalized):
        st = capital.run(method=method, backend=runtime)
        assert st.error() is None
        assert st["city"] == "Paris", method
        assert st.text() == "The capital of France is Paris"


def test_select_of_four_choices_is_one_engine_call(runtime):
    @sgl.function
    def pick(s):
        s += "My favourite colour is " + sgl.select("c", choices=["red", "green", "blue", "dark purple"])

    runtime.engine.reset()
    st = pick.run(backend=runtime)
    assert st["c"] in ("red", "green", "blue", "dark purple")
    calls = runtime.engine.calls
    assert len(calls) == 1 and len(calls[0]["kwargs"]["input_ids"]) == 4
    # every choice is scored over its own tokens only
    rows = st.get_meta_info("c")["input_token_logprobs"]
    assert "".join(r[2] for r in rows[3]).strip() == "dark purple"
    assert all(r[0] is not None for rs in rows for r in rs)


def test_few_shot_run_batch_reuses_the_header(runtime):
    tok = runtime.engine.tokenizer
    header_tokens = len(tok(HEADER)["input_ids"])
    unique = sum(
        len(tok(HEADER + f"Question: What is the capital of {c}?\nAnswer:")["input_ids"]) - header_tokens
        for c in COUNTRIES
    )
    states = few_shot_qa.run_batch([{"country": c} for c in COUNTRIES], backend=runtime, temperature=0)
    assert len(states) == 32 and all(st.error() is None for st in states)
    assert all("\n" not in st["answer"] for st in states)
    answers = {c: st["answer"].strip() for c, st in zip(COUNTRIES, states)}
    assert answers["Japan"] == "Tokyo" and answers["Italy"] == "Rome"
    prefilled = runtime.engine.prefilled_tokens()
    assert prefilled <= 1.2 * (header_tokens + unique), (prefilled, header_tokens, unique)
    # the constant prefix (traced up to the first argument) was cached once, before the programs
    first = runtime.engine.calls[0]
    assert first["kwargs"]["prompt"] == HEADER + "Question: What is the capital of "
    assert first["kwargs"]["sampling_params"] == {"max_new_tokens": 0}


def test_multi_turn_chat(runtime):
    @sgl.function
    def chat(s):
        s += sgl.system("You are a helpful assistant. Answer briefly.")
        s += sgl.user("What is the capital of France?")
        s += sgl.assistant(sgl.gen("a1", max_tokens=12))
        s += sgl.user("And of Italy?")
        s += sgl.assistant(sgl.gen("a2", max_tokens=12))

    runtime.engine.reset()
    st = chat.run(backend=runtime, temperature=0)
    msgs = st.messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert "Paris" in st["a1"] and st["a2"]
    # the second turn is generated after the whole history, first answer included
    second_prompt = runtime.engine.calls[1]["kwargs"]["prompt"]
    assert second_prompt.endswith(st["a1"] + "<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n")
    assert runtime.engine.calls[1]["metas"][0]["cached_tokens"] > 0
    assert msgs[2]["content"] == st["a1"].strip()
    assert st.text().count("<|im_start|>assistant\n") == 2 and st.text().endswith("<|im_end|>\n")


def test_fork_join_on_engine(runtime):
    @sgl.function
    def tips(s):
        s += "Here are four short tips for staying healthy, each one sentence.\n"
        forks = s.fork(4)
        forks += lambda i: f"Tip {i + 1}:" + sgl.gen("tip", max_tokens=8, stop="\n")
        forks.join()
        s += "Summary:" + sgl.gen("summary", max_tokens=4)

    runtime.engine.reset()
    st = tips.run(backend=runtime, temperature=0)
    assert st.error() is None and len(st["tip"]) == 4 and all(isinstance(t, str) for t in st["tip"])
    calls = runtime.engine.calls
    assert calls[0]["kwargs"]["sampling_params"] == {"max_new_tokens": 0}  # the committed prefix
    prefix_tokens = calls[0]["metas"][0]["prompt_tokens"]
    for c in calls[1:5]:  # every child hit the cached prefix
        assert c["metas"][0]["cached_tokens"] >= prefix_tokens - 1


def test_concate_and_append_on_engine(runtime):
    @sgl.function
    def story(s):
        s += "Two facts:\n"
        forks = s.fork(2)
        forks += [sgl.gen("f", max_tokens=4, stop="\n") + "\n", sgl.gen("f", max_tokens=4, stop="\n") + "\n"]
        forks.join("concate_and_append")

    st = story.run(backend=runtime, temperature=0)
    assert st.text().startswith("Two facts:\n") and st.text().count("\n") == 3


def test_streaming_pieces_concatenate_to_text(runtime):
    @sgl.function
    def poem(s):
        s += sgl.user("Write one sentence about the sea.")
        s += sgl.assistant(sgl.gen("line", max_tokens=16))

    st = poem.run(backend=runtime, stream=True, temperature=0)
    pieces = list(st.text_iter("line"))
    assert len(pieces) > 1 and "".join(pieces) == st["line"]
    st2 = poem.run(backend=runtime, stream=True, temperature=0)
    whole = list(st2.text_iter())
    assert "".join(whole) == st2.text() and st2["line"] == st["line"]


def test_stop_trimming_var_scope_and_errors_on_engine(runtime):
    @sgl.function
    def prog(s):
        with s.var_scope("q"):
            s += "Question: What is 2 + 2?\nAnswer:"
        s += sgl.gen("a", max_tokens=8, stop="\n")
        s += "x " * 9000 + sgl.gen("too_long", max_tokens=2)

    st = prog.run(backend=runtime, temperature=0)
    assert st["q"] == "Question: What is 2 + 2?\nAnswer:"
    assert "\n" not in st["a"]
    assert isinstance(st.error(), ValueError)
    with pytest.raises(KeyError, match=r"gen\('too_long'\)"):
        st["too_long"]


def test_image_on_text_model_is_a_clear_error(runtime):
    st = sgl.function(lambda s: s.__iadd__(sgl.user(sgl.image(b"\x89PNG"))))
    err = st.run(backend=runtime).error()
    assert isinstance(err, ValueError) and "not multimodal" in str(err)


def test_default_backend_is_lazy(engine, monkeypatch):
    from sgl.backend import runtime as runtime_module

    made = []

    def fake_runtime():
        made.append(1)
        return sgl.Runtime.from_engine(engine)

    monkeypatch.setattr(sgl.global_config, "default_backend", None)
    monkeypatch.setattr(runtime_module, "Runtime", fake_runtime)
    assert made == []
    st = few_shot_qa.run(country="Japan", temperature=0)
    assert st["answer"].strip() == "Tokyo" and made == [1]
    assert sgl.get_server_info() and sgl.flush_cache() in (True, False)
