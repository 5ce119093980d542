"""run_batch, bind, trace and cache on the mock backend."""

from __future__ import annotations

import pytest
import sgl
from lang_mock_backend import completion_for

HEADER = "Answer each question in one word.\n" + "".join(f"Q: question {i}?\nA: answer {i}\n" for i in range(5))


@sgl.function
def few_shot(s, question, tag="Q"):
    s += HEADER
    s += f"{tag}: " + question + "\nA:"
    s += sgl.gen("answer", stop="\n")


def test_run_batch_keeps_order_and_caches_prefix_first(mock):
    questions = [f"q{i}" for i in range(12)]
    states = few_shot.run_batch([{"question": q} for q in questions], backend=mock, temperature=0)
    assert mock.calls[0] == ("cache", HEADER)  # the traced constant prefix, cached before any program
    for q, st in zip(questions, states):
        assert st["answer"] == completion_for(HEADER + f"Q: {q}\nA:").split("\n")[0]
    assert mock.kinds().count("generate") == 12


def test_run_batch_tuples_progress_bar_and_generator(mock, capsys):
    states = few_shot.run_batch([("a",), ("b", "T")], backend=mock, progress_bar=True, num_threads=2)
    assert states[1].text().startswith(HEADER + "T: b\nA:")
    assert "2/2" in capsys.readouterr().err  # tqdm writes to stderr
    gen = few_shot.run_batch([{"question": x} for x in "xyz"], backend=mock, generator_style=True)
    assert [st.text().split("\n")[-2] for st in gen] == ["Q: x", "Q: y", "Q: z"]
    with pytest.raises(TypeError, match="does not match"):
        few_shot.run_batch([("a", "b", "c")], backend=mock)
    assert few_shot.run_batch([], backend=mock) == []


def test_short_prefix_is_not_cached(mock):
    @sgl.function
    def short(s, x):
        s += "Hi " + x + sgl.gen("g", max_tokens=1)

    short.run_batch([{"x": "a"}, {"x": "b"}], backend=mock)
    assert "cache" not in mock.kinds()


def test_bind(mock):
    bound = few_shot.bind(tag="Z")
    st = bound.run(question="w", backend=mock)
    assert "Z: w\nA:" in st.text()
    with pytest.raises(TypeError, match="unknown arguments"):
        few_shot.bind(nope=1)


def test_trace_prints_graph_without_running(mock):
    @sgl.function
    def prog(s, topic):
        s += sgl.system("You write tips.")
        s += sgl.user("Tips about " + topic)
        forks = s.fork(2)
        forks += lambda i: f"Tip {i}:" + sgl.gen("tip", max_tokens=8)
        forks.join()
        s += sgl.assistant(sgl.select("best", choices=["first", "second"]))

    tr = prog.trace(backend=mock)
    text = str(tr)
    assert mock.calls == []  # nothing was sent
    for piece in ("RoleBegin('system')", "Argument('topic')", "fork(2)", "child 1:", "gen('tip')", "select('best'"):
        assert piece in text, piece
    assert tr.prefix() == "<|im_start|>system\nYou write tips.<|im_end|>\n<|im_start|>user\nTips about "


def test_cache_returns_prefix(mock):
    assert few_shot.cache(backend=mock) == HEADER
    assert mock.calls == [("cache", HEADER)]


def test_fstring_argument_stops_prefix(mock):
    @sgl.function
    def fmt(s, name):
        s += "A constant header that is long enough to be worth caching, really. "
        s += f"Hello {name}!" + sgl.gen("g")

    assert fmt.cache(backend=mock).endswith("really. ")


def test_calling_function_runs_it(mock):
    st = few_shot("direct", backend=mock)
    assert st["answer"]


def test_flush_cache_and_server_info(mock):
    assert sgl.flush_cache(mock) is True
    assert sgl.get_server_info(mock) == {"backend": "mock"}
