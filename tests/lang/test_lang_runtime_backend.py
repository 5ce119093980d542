"""The Runtime backend's requests, on a fake engine: select's token boundary and batching."""

from __future__ import annotations

import pytest
import sgl
from sgl.backend.runtime import Runtime
from sgl.backend.scoring import choice_spans

VOCAB = ["The", " capital", " of", " France", " is", " ", " Paris", " London", " Berlin", "Paris",
         "London", "Berlin", "is", ":", " B", "er", "lin"]  # fmt: skip


class FakeTokenizer:
    """Longest-match tokenizer over VOCAB; merges " " + "Paris" into " Paris" like BPE does."""

    chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"

    def encode(self, text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            best = max((v for v in VOCAB if text.startswith(v, i)), key=len)
            ids.append(VOCAB.index(best))
            i += len(best)
        return ids

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return "".join(f"<{m['role']}>{m['content']}</s>" for m in messages)


class FakeEngine:
    """Logprob of token t at position p = -(t + 1) / 10; records every call."""

    def __init__(self) -> None:
        self.tokenizer = FakeTokenizer()
        self.calls: list[dict] = []

    def generate(self, prompt=None, sampling_params=None, input_ids=None, return_logprob=False,
                 logprob_start_len=None, return_text_in_logprobs=False, stream=False, **kw):  # fmt: skip
        self.calls.append(dict(prompt=prompt, input_ids=input_ids, sampling_params=sampling_params,
                               logprob_start_len=logprob_start_len, return_logprob=return_logprob))  # fmt: skip
        many = input_ids if input_ids is not None and isinstance(input_ids[0], list) else None
        if many is None:
            return {"text": "ok", "output_ids": [], "meta_info": {"prompt_tokens": 1, "cached_tokens": 0}}
        start = logprob_start_len or 0
        outs = []
        for ids in many:
            rows = [[None if p == start else -(t + 1) / 10, t, VOCAB[t]] for p, t in enumerate(ids) if p >= start]
            outs.append({"text": "", "meta_info": {"input_token_logprobs": rows, "output_token_logprobs": []}})
        return outs


def test_choice_spans_score_only_differing_tokens():
    tok = FakeTokenizer()
    spans = choice_spans(tok, "The capital of France is ", ["Paris", "London", "Berlin"])
    # prompt = [The, capital, of, France, is, " "]; "is Paris" merges to [is, " Paris"]
    for sp, word in zip(spans, [" Paris", " London", " Berlin"]):
        assert sp.boundary == 5
        assert [VOCAB[t] for t in sp.choice_ids] == [word]
    # no trailing space: the choice starts a new token after "is"
    spans = choice_spans(tok, "The capital of France is", [" Paris", ":"])
    assert [VOCAB[t] for t in spans[0].choice_ids] == [" Paris"]
    assert spans[0].boundary == 5


def test_select_is_one_batched_call_from_the_boundary():
    eng = FakeEngine()
    rt = Runtime.from_engine(eng)

    @sgl.function
    def f(s):
        s += "The capital of France is " + sgl.select("city", choices=["Paris", "London", "Berlin", "B"])

    st = f.run(backend=rt)
    assert st.error() is None
    assert len(eng.calls) == 1
    call = eng.calls[0]
    assert len(call["input_ids"]) == 4 and call["return_logprob"]
    assert call["sampling_params"]["max_new_tokens"] == 0
    assert call["logprob_start_len"] == 4  # one before the boundary (5)
    rows = st.get_meta_info("city")["input_token_logprobs"]
    assert [[r[2] for r in rs] for rs in rows] == [[" Paris"], [" London"], [" Berlin"], [" B"]]
    # " Paris" has the smallest id -> highest fake logprob
    assert st["city"] == "Paris"


def test_unconditional_select_scores_choice_tokens_alone():
    eng = FakeEngine()
    rt = Runtime.from_engine(eng)

    @sgl.function
    def f(s):
        s += "The capital of France is" + sgl.select(
            "city", choices=[" Paris", " Berlin"], choices_method=sgl.unconditional_likelihood_normalized
        )

    st = f.run(backend=rt)
    assert st.error() is None and len(eng.calls) == 2
    assert eng.calls[1]["input_ids"] == [[VOCAB.index(" Paris")], [VOCAB.index(" Berlin")]]
    assert eng.calls[1]["logprob_start_len"] == 0


def test_fork_commits_and_generate_sends_resolved_params():
    eng = FakeEngine()
    rt = Runtime.from_engine(eng)
    assert rt.get_chat_template().role_prefix_and_suffix["user"] == ("<user>", "</s>")

    @sgl.function
    def f(s):
        s += "The capital"
        forks = s.fork(2)
        forks += sgl.gen("x", max_tokens=3, stop="\n")
        forks.join()

    st = f.run(backend=rt, temperature=0)
    assert st["x"] == ["ok", "ok"]
    commit, *gens = eng.calls
    assert commit["prompt"] == "The capital" and commit["sampling_params"] == {"max_new_tokens": 0}
    sp = gens[0]["sampling_params"]
    assert sp["max_new_tokens"] == 3 and sp["temperature"] == 0 and sp["stop"] == ["\n", "</s>"]


@pytest.mark.parametrize("ctor", [sgl.image])
def test_image_needs_multimodal_engine(ctor):
    rt = Runtime.from_engine(FakeEngine())
    st = sgl.function(lambda s: s.__iadd__(ctor(b"png"))).run(backend=rt)
    assert "not multimodal" in str(st.error())
