"""Interpreter semantics on the deterministic mock backend."""

from __future__ import annotations

import asyncio

import pytest
import sgl
from lang_mock_backend import FAIL_MARK, FAIL_MID_STREAM_MARK, completion_for


def test_gen_text_variables_and_stop_trimming(mock):
    @sgl.function
    def qa(s, q):
        s += "Q: " + q + "\nA:"
        s += sgl.gen("a", stop="\n")
        s += "\n"

    st = qa.run(q="why", backend=mock)
    expected = completion_for("Q: why\nA:").split("\n")[0]
    assert st["a"] == expected
    assert st.text() == "Q: why\nA:" + expected + "\n"
    assert "a" in st and "b" not in st
    assert st.error() is None


def test_sampling_defaults_overrides_and_template_stops(mock):
    @sgl.function
    def f(s):
        s += "x" + sgl.gen("a", max_tokens=2, stop=["\n"])
        s += sgl.gen("b")

    st = f.run(backend=mock, temperature=0.5, max_new_tokens=7)
    a, b = st.get_meta_info("a")["params"], st.get_meta_info("b")["params"]
    assert a.max_new_tokens == 2 and a.temperature == 0.5
    # the chat template's stop strings are appended to every gen's stops
    assert a.stop == ("\n", "<|im_end|>") and b.stop == ("<|im_end|>",)
    assert b.max_new_tokens == 7 and b.top_k == -1
    assert len(st["a"].split()) == 2


def test_dtype_int(mock):
    @sgl.function
    def f(s):
        s += "n = " + sgl.gen_int("n")

    st = f.run(backend=mock)
    assert st["n"] == "42"  # the mock's int completion is "42 \n"; stops " " and "\n" added


def test_roles_messages_and_default_system_prompt():
    from lang_mock_backend import MockBackend

    mock = MockBackend(chat_template="qwen")  # has a default system prompt

    @sgl.function
    def chat(s):
        s += sgl.user("Hello")
        s += sgl.assistant(sgl.gen("r1", max_tokens=2))
        with s.user():
            s += "  More"
        with s.assistant():
            s += sgl.gen("r2", max_tokens=1)

    st = chat.run(backend=mock)
    msgs = st.messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[0]["content"] == "You are a helpful assistant."
    assert msgs[1]["content"] == "Hello" and msgs[3]["content"] == "More"  # leading space stripped
    assert msgs[2]["content"] == st["r1"].lstrip()
    assert st.text().startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n")
    assert st.text().endswith("<|im_end|>\n")


def test_explicit_system_suppresses_default():
    from lang_mock_backend import MockBackend

    st = sgl.function(lambda s: s.__iadd__(sgl.system("Be brief.") + sgl.user("Hi"))).run(backend=MockBackend("qwen"))
    assert [m["content"] for m in st.messages()] == ["Be brief.", "Hi"]


def test_nested_roles_are_an_error(mock):
    @sgl.function
    def f(s):
        s += sgl.user_begin() + sgl.assistant_begin()

    st = f.run(backend=mock)
    assert isinstance(st.error(), ValueError) and "nest" in str(st.error())


def test_fork_commits_prefix_and_gathers_variables(mock):
    @sgl.function
    def f(s):
        s += "Header. "
        forks = s.fork(3)
        forks += lambda i: f"Item {i}: " + sgl.gen("x", max_tokens=1)
        forks.join()
        s += "Done."

    st = f.run(backend=mock)
    # the shared prefix was committed before the children generated
    assert mock.calls[0] == ("commit", "Header. ")
    assert sorted(k for k in mock.kinds()[1:]) == ["generate"] * 3
    xs = st["x"]
    assert xs == [" " + completion_for(f"Header. Item {i}: ").split()[0] for i in range(3)]
    assert xs[0] != xs[1]
    assert st.text() == "Header. Done."  # gather_variable leaves the parent's text alone


def test_forks_iadd_three_forms_and_concate_and_append(mock):
    @sgl.function
    def f(s):
        s += "P:"
        forks = s.fork(2)
        forks += " common"  # one expression, broadcast
        forks += [" a", " b"]  # one per child
        forks += lambda i: f" #{i}"  # callable of the index
        forks[1] += "!"
        forks.join("concate_and_append")

    st = f.run(backend=mock)
    assert st.text() == "P: common a #0 common b #1!"
    assert [fk for fk in mock.kinds()] == ["commit"]


def test_fork_children_copy_state(mock):
    @sgl.function
    def f(s):
        s += sgl.user("q")
        s["k"] = "v"
        forks = s.fork(2)
        for fk in forks:
            assert fk["k"] == "v" and fk.messages() == s.messages()
            fk += sgl.assistant("child")
        assert forks[0].messages()[-1] == {"role": "assistant", "content": "child"}
        assert len(s.messages()) == 1
        # not joining is legal

    assert f.run(backend=mock).error() is None


def test_copy_context_manager(mock):
    @sgl.function
    def f(s):
        s += "base"
        with s.copy() as c:
            c += " extra" + sgl.gen("y", max_tokens=1)

    st = f.run(backend=mock)
    assert st.text() == "base" and isinstance(st["y"], list) and len(st["y"]) == 1
    assert "commit" not in mock.kinds()  # a fork of one shares nothing


def test_var_scope(mock):
    @sgl.function
    def f(s):
        s += "A "
        with s.var_scope("mid"):
            s += "B " + sgl.gen("g", max_tokens=1)
        s += " C"

    st = f.run(backend=mock)
    assert st["mid"] == "B " + st["g"]


def test_select_appends_and_stores(mock):
    mock.scores = {"yes": [-0.1], "no": [-2.0]}

    @sgl.function
    def f(s):
        s += "Ok? " + sgl.select("ans", choices=["no", "yes"])

    st = f.run(backend=mock)
    assert st["ans"] == "yes" and st.text() == "Ok? yes"
    assert st.get_meta_info("ans")["normalized_prompt_logprobs"] == [-2.0, -0.1]


def test_errors_are_captured_and_named(mock):
    @sgl.function
    def f(s):
        s += "ok " + sgl.gen("first", max_tokens=1)
        s += FAIL_MARK + sgl.gen("answer", max_tokens=3)
        s += sgl.gen("after")

    st = f.run(backend=mock)
    err = st.error()
    assert isinstance(err, RuntimeError) and "mock engine failure" in str(err)
    assert st["first"]  # values before the failure survive
    with pytest.raises(KeyError, match=r"gen\('answer'\).*mock engine failure"):
        st["answer"]
    with pytest.raises(KeyError, match="answer"):
        st["after"]
    with pytest.raises(KeyError, match="no variable 'nope'"):
        sgl.function(lambda s: None).run(backend=mock)["nope"]


def test_reads_after_a_failure_never_hang(mock):
    @sgl.function
    def f(s):
        s += FAIL_MARK + sgl.gen("x")
        s.sync()  # the failure has happened before the next submission
        s += sgl.gen("later")

    st = f.run(backend=mock)
    with pytest.raises(KeyError, match=r"gen\('x'\)"):
        st["later"]


def test_bad_appends_raise_in_the_program(mock):
    @sgl.function
    def none(s):
        s += None

    with pytest.raises(ValueError, match="None"):
        none.run(backend=mock)

    @sgl.function
    def number(s):
        s += 3

    with pytest.raises(TypeError, match="str"):
        number.run(backend=mock)


def test_stream_text_iter_concatenates_to_text():
    from lang_mock_backend import MockBackend

    mock = MockBackend(stream_delay=0.002)

    @sgl.function
    def f(s):
        s += "Say:" + sgl.gen("a")
        s += " then" + sgl.gen("b", stop="\n")

    st = f.run(backend=mock, stream=True)
    pieces = list(st.text_iter())
    assert len(pieces) > 3 and "".join(pieces) == st.text()
    st2 = f.run(backend=mock, stream=True)
    var_pieces = list(st2.text_iter("a"))
    assert len(var_pieces) > 1 and "".join(var_pieces) == st2["a"]
    assert "generate_stream" in mock.kinds()


def test_stream_failure_mid_gen_leaves_no_partial_value(mock):
    @sgl.function
    def f(s):
        s += FAIL_MID_STREAM_MARK + sgl.gen("a")

    st = f.run(backend=mock, stream=True)
    assert len(list(st.text_iter("a"))) <= 1  # at most the piece sent before the failure; no hang
    assert "mock stream broke" in str(st.error())
    with pytest.raises(KeyError, match=r"gen\('a'\)"):
        st["a"]


def test_stream_async_iter_with_meta():
    from lang_mock_backend import MockBackend

    mock = MockBackend(stream_delay=0.001)

    @sgl.function
    def f(s):
        s += "Go:" + sgl.gen("a")

    st = f.run(backend=mock, stream=True)

    async def collect():
        return [x async for x in st.text_async_iter("a", return_meta_data=True)]

    got = asyncio.run(collect())
    assert "".join(p for p, _ in got) == st["a"]
    assert all(isinstance(m, dict) for _, m in got)


def test_non_stream_text_iter_yields_whole(mock):
    st = sgl.function(lambda s: s.__iadd__("abc")).run(backend=mock)
    assert list(st.text_iter()) == ["abc"]


def test_n_greater_than_one(mock):
    @sgl.function
    def f(s):
        s += "x" + sgl.gen("many", n=2, max_tokens=1)

    st = f.run(backend=mock)
    assert isinstance(st["many"], list) and len(st["many"]) == 2
    assert st.text() == "x" + st["many"][0]


def test_image_on_text_only_backend_is_a_clear_error(mock):
    @sgl.function
    def f(s):
        s += sgl.user(sgl.image(b"\x89PNG fake") + "What is this?")

    err = f.run(backend=mock).error()
    assert isinstance(err, ValueError) and "not multimodal" in str(err)
