"""Token healing (sampling/healing.py) on the default model: a prompt ending in "http:" goes on
as the model's "://" token, the output text leaves the backed-off ":" out, the radix cache
reuses the prompt before it; off by default; not with a constraint."""

from __future__ import annotations

import pytest
import sgl
from sgl.runtime import Engine
from sgl.runtime.sampling.detokenizer import IncrementalDetokenizer
from sgl.runtime.sampling.healing import heal
from sgl.runtime.sampling.params import SamplingParams

PROMPT = "The website of the Python project is http:"
GREEDY = {"max_new_tokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def engine():
    with Engine(dtype="float32") as e:
        yield e


def test_healing_extends_the_last_token(engine):
    tok = engine.tokenizer
    ids = tok(PROMPT)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[-1]) == ":"  # the prompt splits "http:" from what follows
    plain = engine.generate(PROMPT, GREEDY)
    healed = engine.generate(PROMPT, {**GREEDY, "token_healing": True})
    assert not plain["text"].startswith("//")  # unhealed, the model cannot write "://" as one token
    first = tok.convert_ids_to_tokens(healed["output_ids"][0])
    assert first.startswith(":") and first != ":", first  # e.g. "://"
    assert healed["text"].startswith("//")  # the ":" is the prompt's, not the output's
    assert healed["text"] == tok.decode(healed["output_ids"])[1:]
    assert healed["meta_info"]["prompt_tokens"] == len(ids) - 1
    again = engine.generate(PROMPT, {**GREEDY, "token_healing": True})
    assert again["text"] == healed["text"]
    assert again["meta_info"]["cached_tokens"] >= len(ids) - 2  # the prompt before ":" is reused
    streamed = list(engine.generate(PROMPT, {**GREEDY, "token_healing": True}, stream=True))
    assert streamed[-1]["text"] == healed["text"]
    assert all(healed["text"].startswith(c["text"]) for c in streamed)


def test_heal_leaves_what_cannot_be_healed(engine):
    info = engine._get_grammar_compiler().info
    assert heal([42], info) is None  # one token: nothing before it
    eos = min(engine._requests.eos_ids)
    assert heal([42, eos], info) is None  # a special token has no text to extend
    h = heal(engine.tokenizer(PROMPT)["input_ids"], info)
    assert h is not None and h.drop == ":" and len(h.first_ids) > 1
    assert all((info.token_bytes[t] or b"").startswith(b":") for t in h.first_ids)


def test_detokenizer_drops_the_healed_text_once(engine):
    tok = engine.tokenizer
    ids = tok("a link http://x://y")["input_ids"]
    at = next(i for i, t in enumerate(ids) if tok.convert_ids_to_tokens(t) == "://")
    d = IncrementalDetokenizer(tok, ids[:at], drop=":")
    for t in ids[at:]:
        d.add(t)
    d.flush()
    assert d.text == tok.decode(ids[at:])[1:] and d.text.count("://") == 1


def test_off_by_default_and_not_with_a_constraint():
    assert SamplingParams().token_healing is False
    with pytest.raises(ValueError, match="token_healing cannot be combined with regex"):
        SamplingParams(token_healing=True, regex="a+")
    with pytest.raises(ValueError, match="token_healing"):
        SamplingParams(token_healing="yes")
    assert sgl.gen("x", token_healing=True).sampling.to_engine()["token_healing"] is True
    assert "token_healing" not in sgl.gen("x").sampling.to_engine()
    with pytest.raises(ValueError, match="token_healing=True"):
        sgl.gen("x", token_healing=True, regex="a+")


def test_gen_token_healing_in_a_program(engine):
    @sgl.function
    def link(s):
        s += PROMPT + sgl.gen("rest", max_tokens=8, temperature=0, token_healing=True)

    state = link.run(backend=sgl.Runtime.from_engine(engine))
    assert state["rest"] == engine.generate(PROMPT, {**GREEDY, "token_healing": True})["text"]
    assert state.text().startswith(PROMPT + "//")
