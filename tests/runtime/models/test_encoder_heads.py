"""Encoder classifiers and RoBERTa-family embedders against transformers on tiny random
checkpoints (float32, within 1e-4, alone and in a batch of mixed lengths):
BertForSequenceClassification (softmax over labels; one label: sigmoid, as sentence-transformers'
CrossEncoder scores it, with the pair's token types), RobertaModel / XLMRobertaModel (positions
offset by padding_idx + 1) and their ForSequenceClassification."""

from __future__ import annotations

import pytest
import torch
from pooling_fixtures import encoder_config, encoder_prompts, minilm_folder, save_model
from sgl.runtime import Engine

QUERY = "how do telescopes see distant galaxies"
DOCS = ["the new telescope images show a distant spiral galaxy", "a recipe for sourdough bread",
        "galaxies far away are seen by collecting faint light over long exposures with large mirrors", "hi"]


def check_close(got, want) -> None:
    torch.testing.assert_close(torch.tensor(got), want.float(), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def bert_classifier(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    folder = str(tmp_path_factory.mktemp("bert_cls"))
    config = encoder_config(BertConfig, max_position_embeddings=128, type_vocab_size=2, num_labels=3,
                            id2label={0: "neg", 1: "neu", 2: "pos"}, architectures=["BertForSequenceClassification"])
    return folder, save_model(BertForSequenceClassification, config, folder, minilm_folder())


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    folder = str(tmp_path_factory.mktemp("cross_encoder"))
    config = encoder_config(BertConfig, max_position_embeddings=128, type_vocab_size=2, num_labels=1,
                            architectures=["BertForSequenceClassification"])
    return folder, save_model(BertForSequenceClassification, config, folder, minilm_folder(), seed=1)


def test_bert_classifier_softmax_labels(bert_classifier):
    folder, ref = bert_classifier
    ids = encoder_prompts()
    with Engine(folder, dtype="float32") as engine:
        assert engine.task == "classify" and engine.labels == ("neg", "neu", "pos")
        alone = [engine.classify(input_ids=p) for p in ids]
        batch = engine.classify(input_ids=ids)
        engine.check_kv()
    for p, one, many in zip(ids, alone, batch):
        with torch.inference_mode():
            want = torch.softmax(ref(torch.tensor([p])).logits[0], -1)
        check_close(one["scores"], want)
        check_close(many["scores"], want)
        assert one["label"] == ("neg", "neu", "pos")[int(want.argmax())]


def test_cross_encoder_rerank_matches_sentence_transformers(cross_encoder):
    """Pairs go through the tokenizer's pair template with token types 0 / 1 (a model that read
    every token as type 0 would give other scores: checked)."""
    st = pytest.importorskip("sentence_transformers")
    folder, ref = cross_encoder
    want = torch.tensor(st.CrossEncoder(folder, device="cpu").predict([(QUERY, d) for d in DOCS]))
    with Engine(folder, dtype="float32") as engine:
        got = engine.rerank(QUERY, DOCS)
        pair = engine.tokenizer(QUERY, DOCS[0])
        assert any(pair["token_type_ids"])
        untyped = engine.score(input_ids=pair["input_ids"])
        with pytest.raises(ValueError, match="apply to embedding models"):
            engine.encode(input_ids=[101, 102], normalize=True)
    check_close(got, want)
    assert abs(untyped - got[0]) > 1e-4  # token types matter: the pair's own differ from all-0
    with torch.inference_mode():
        typed = torch.sigmoid(ref(**{k: torch.tensor([v]) for k, v in pair.items()}).logits[0, 0])
    assert abs(float(typed) - got[0]) < 1e-4


def test_one_score_calls_refuse_many_labels(bert_classifier):
    folder, _ = bert_classifier
    with Engine(folder, dtype="float32") as engine:
        with pytest.raises(ValueError, match="3 labels .*classify"):
            engine.score(input_ids=[101, 102])
        with pytest.raises(ValueError, match="3 labels"):
            engine.rerank("q", ["d"])


@pytest.mark.parametrize("arch", ["RobertaModel", "XLMRobertaModel"])
def test_roberta_embedders(tmp_path, arch):
    import transformers

    cfg_cls = getattr(transformers, arch.replace("Model", "Config"))
    config = encoder_config(cfg_cls, max_position_embeddings=130, architectures=[arch])
    ref = save_model(getattr(transformers, arch), config, str(tmp_path), minilm_folder())
    ids = encoder_prompts()
    ids.append([101] + [2000] * 125 + [102])  # the longest input: 128 = 130 - padding_idx - 1 positions
    with Engine(str(tmp_path), dtype="float32") as engine:
        assert engine.max_input_tokens == 128
        alone = [engine.encode(input_ids=p) for p in ids]
        batch = engine.encode(input_ids=ids)
        with pytest.raises(ValueError, match="limit of 128"):
            engine.encode(input_ids=[101] * 129)
    for p, one, many in zip(ids, alone, batch):
        with torch.inference_mode():
            v = ref(torch.tensor([p])).last_hidden_state[0, 0]
        check_close(one["embedding"], v / v.norm())
        check_close(many["embedding"], v / v.norm())


@pytest.mark.parametrize("arch", ["RobertaForSequenceClassification", "XLMRobertaForSequenceClassification"])
def test_roberta_classifiers(tmp_path, arch):
    import transformers

    cfg_cls = getattr(transformers, arch.replace("ForSequenceClassification", "Config"))
    config = encoder_config(cfg_cls, max_position_embeddings=66, num_labels=2, architectures=[arch])
    ref = save_model(getattr(transformers, arch), config, str(tmp_path), minilm_folder())
    ids = encoder_prompts()
    with Engine(str(tmp_path), dtype="float32") as engine:
        batch = engine.classify(input_ids=ids)
        alone = engine.classify(input_ids=ids[1])
    for p, r in zip(ids, batch):
        with torch.inference_mode():
            want = torch.softmax(ref(torch.tensor([p])).logits[0], -1)
        check_close(r["scores"], want)
    assert alone["scores"] == pytest.approx(batch[1]["scores"], abs=1e-5)
