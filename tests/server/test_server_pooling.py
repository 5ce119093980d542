"""The pooling routes over real servers on 127.0.0.1: /encode, /classify, /v1/rerank and
/v1/score on a tiny random cross-encoder (scores against transformers) and on all-MiniLM-L6-v2;
`--is-embedding` on a tiny causal Llama (last-token vectors against transformers); bad input is a
400 naming the field; pooling models answer no generation route and the reverse."""

from __future__ import annotations

import pytest
import requests
import torch
from conftest import start_server, stop_server
from pooling_fixtures import encoder_config, minilm_folder, save_model

QUERY = "how do telescopes see distant galaxies"
DOCS = ["the new telescope images show a distant spiral galaxy", "a recipe for sourdough bread",
        "galaxies far away are seen by collecting faint light over long exposures with large mirrors", "hi"]


def post(server, route: str, body: dict, status: int = 200, **kw) -> dict | list:
    r = requests.post(server.url + route, json=body, timeout=120, **kw)
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    """(server, transformers reference, tokenizer folder): BertForSequenceClassification, one label."""
    from transformers import BertConfig, BertForSequenceClassification

    folder = str(tmp_path_factory.mktemp("cross_encoder"))
    config = encoder_config(BertConfig, max_position_embeddings=128, type_vocab_size=2, num_labels=1,
                            architectures=["BertForSequenceClassification"])
    ref = save_model(BertForSequenceClassification, config, folder, minilm_folder(), seed=1)
    srv = start_server(["--model-path", folder, "--dtype", "float32"], str(tmp_path_factory.mktemp("ce") / "log"))
    yield srv, ref, folder
    stop_server(srv)


@pytest.fixture(scope="module")
def causal_embedder(tmp_path_factory, tiny_model):
    srv = start_server(["--model-path", tiny_model, "--dtype", "float32", "--is-embedding"],
                       str(tmp_path_factory.mktemp("emb") / "log"))
    yield srv
    stop_server(srv)


def pair_scores(ref, folder: str, query: str, docs: list[str]) -> list[float]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        return [float(torch.sigmoid(ref(**tok(query, d, return_tensors="pt")).logits[0, 0])) for d in docs]


def test_cross_encoder_rerank_score_classify(cross_encoder):
    srv, ref, folder = cross_encoder
    want = pair_scores(ref, folder, QUERY, DOCS)
    ranked = post(srv, "/v1/rerank", {"query": QUERY, "documents": DOCS})
    assert [r["index"] for r in ranked] == sorted(range(len(DOCS)), key=lambda i: -want[i])
    for r in ranked:
        assert abs(r["score"] - want[r["index"]]) < 1e-4 and r["document"] == DOCS[r["index"]]
        assert r["meta_info"]["prompt_tokens"] > 0
    top = post(srv, "/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": 2, "return_documents": False})
    assert [r["index"] for r in top] == [r["index"] for r in ranked[:2]] and "document" not in top[0]

    scored = post(srv, "/v1/score", {"query": QUERY, "items": DOCS})
    assert scored["object"] == "scoring" and scored["scores"] == pytest.approx(want, abs=1e-4)
    assert scored["usage"]["prompt_tokens"] == sum(r["meta_info"]["prompt_tokens"] for r in ranked)
    alone = post(srv, "/v1/score", {"items": DOCS[0]})  # no query: each item's own score
    classified = post(srv, "/classify", {"text": [DOCS[0], DOCS[1]]})
    assert alone["scores"] == pytest.approx([classified[0]["scores"][0]], abs=1e-6)
    assert classified[0]["embedding"] == classified[0]["scores"] and classified[0]["label"] == "LABEL_0"
    assert requests.get(srv.url + "/get_model_info", timeout=30).json()["is_generation"] is False


@pytest.mark.parametrize("route,body,param", [
    ("/v1/rerank", {"query": QUERY, "documents": []}, "documents"),
    ("/v1/rerank", {"query": "", "documents": ["d"]}, "query"),
    ("/v1/rerank", {"query": QUERY, "documents": ["d", ""]}, "documents.1"),
    ("/v1/rerank", {"query": QUERY, "documents": ["d"], "top_n": 0}, "top_n"),
    ("/v1/rerank", {"query": QUERY, "documents": ["d"], "stream": True}, "stream"),
    ("/v1/score", {"query": QUERY, "items": []}, "items"),
    ("/v1/score", {"items": ["d"], "label_token_ids": [1, 2]}, "label_token_ids"),
    ("/classify", {"text": ["fine", ""]}, "text.1"),
    ("/classify", {"input_ids": [[101, 10**6]]}, "input_ids.0"),
    ("/classify", {"text": "x", "dimensions": 8}, "dimensions"),
    ("/classify", {"text": ["x"] * 3000}, "text"),
    ("/classify", {"text": "x " * 200}, "text"),  # past max_position_embeddings (128)
    ("/encode", {"text": "x"}, "normalize"),  # fine on /encode but a classifier: normalize is refused
])
def test_cross_encoder_bad_input(cross_encoder, route, body, param):
    srv, _, _ = cross_encoder
    if route == "/encode":
        body = {**body, "normalize": True}
    err = post(srv, route, body, status=400)["error"]
    assert err["param"] == param or f"`{param}`" in err["message"], err


def test_truncate_is_asked_for(cross_encoder):
    srv, _, _ = cross_encoder
    long = "x " * 200
    assert "limit of 128" in post(srv, "/v1/score", {"items": [long]}, status=400)["error"]["message"]
    out = post(srv, "/classify", {"text": long, "truncate": True})
    assert out["meta_info"]["prompt_tokens"] == 128


def test_minilm_encode_rerank_and_limits(embedding_server):
    vectors = post(embedding_server, "/v1/embeddings", {"input": DOCS, "encoding_format": "float"})["data"]
    encoded = post(embedding_server, "/encode", {"text": DOCS})
    torch.testing.assert_close(torch.tensor([e["embedding"] for e in encoded]),
                               torch.tensor([v["embedding"] for v in vectors]), atol=1e-6, rtol=0)
    q = torch.tensor(post(embedding_server, "/encode", {"text": QUERY})["embedding"])
    cosines = (torch.tensor([v["embedding"] for v in vectors]) @ q).tolist()
    ranked = post(embedding_server, "/v1/rerank", {"query": QUERY, "documents": DOCS})
    assert [r["score"] for r in ranked] == pytest.approx(sorted(cosines, reverse=True), abs=1e-5)
    assert ranked[0]["index"] in (0, 2)  # a telescope sentence ranks first
    raw = post(embedding_server, "/encode", {"text": "hi", "normalize": False})["embedding"]
    assert abs(torch.tensor(raw).norm() - 1) > 1e-3

    err = post(embedding_server, "/v1/embeddings", {"input": ["a"] * 10_000}, status=400)["error"]
    assert err["param"] == "input" and "2048" in err["message"]
    err = post(embedding_server, "/v1/embeddings", {"input": "x", "dimensions": 385}, status=400)["error"]
    assert err["param"] == "dimensions" and "384" in err["message"]
    err = post(embedding_server, "/v1/embeddings", {"input": [[101, -1]]}, status=400)["error"]
    assert err["param"] == "input.0" and "30522" in err["message"]
    err = post(embedding_server, "/classify", {"text": "x"}, status=400)["error"]
    assert err["param"] == "model" and "/v1/embeddings" in err["message"]
    err = post(embedding_server, "/v1/score", {"items": ["x"]}, status=400)["error"]
    assert "/v1/embeddings" in err["message"]


@pytest.mark.parametrize("route,body", [
    ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 2}}),
    ("/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 2}),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
])
def test_a_pooling_model_generates_nothing(embedding_server, route, body):
    err = post(embedding_server, route, body, status=400)["error"]
    assert err["param"] == "model" and "/v1/embeddings" in err["message"] and route in err["message"]


@pytest.mark.parametrize("route,body", [("/encode", {"text": "x"}), ("/classify", {"text": "x"}),
                                        ("/v1/rerank", {"query": "q", "documents": ["d"]}),
                                        ("/v1/score", {"query": "q", "items": ["d"]})])
def test_a_generation_model_pools_nothing(secure_server, auth, route, body):
    err = post(secure_server, route, body, status=400, headers=auth)["error"]
    assert err["param"] == "model" and "/v1/completions" in err["message"] and route in err["message"]


def test_is_embedding_on_a_causal_lm(causal_embedder, tiny_model):
    from transformers import AutoModelForCausalLM

    ids = [[5, 17, 300, 42], [9, 8, 7, 6, 5, 4, 3, 2, 1, 100, 200]]
    out = post(causal_embedder, "/encode", {"input_ids": ids})
    oai = post(causal_embedder, "/v1/embeddings", {"input": ids, "encoding_format": "float"})
    ref = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).model.eval()
    for p, r, o in zip(ids, out, oai["data"]):
        with torch.inference_mode():
            v = ref(torch.tensor([p])).last_hidden_state[0, -1]
        torch.testing.assert_close(torch.tensor(r["embedding"]), v / v.norm(), atol=1e-4, rtol=0)
        assert o["embedding"] == pytest.approx(r["embedding"], abs=1e-6)
    assert requests.get(causal_embedder.url + "/get_model_info", timeout=30).json()["is_generation"] is False
    err = post(causal_embedder, "/generate", {"input_ids": ids[0]}, status=400)["error"]
    assert "/encode" in err["message"]


def test_label_token_scores_on_a_generation_model(secure_server, auth, tiny_model):
    """SGLang's /v1/score form: the next-token probability of each label after query + item."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    body = {"query": "Is it about bread? ", "items": ["sourdough", "football"], "label_token_ids": [100, 2000]}
    out = post(secure_server, "/v1/score", body, headers=auth)
    soft = post(secure_server, "/v1/score", {**body, "apply_softmax": True}, headers=auth)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for item, p, s in zip(body["items"], out["scores"], soft["scores"]):
        with torch.inference_mode():
            logits = ref(**tok(body["query"] + item, return_tensors="pt")).logits[0, -1]
        want = torch.log_softmax(logits, -1)[[100, 2000]]
        torch.testing.assert_close(torch.tensor(p), want.exp(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(s), torch.softmax(want, -1), atol=1e-5, rtol=1e-4)
    assert out["usage"]["prompt_tokens"] > 0
    err = post(secure_server, "/v1/score", {"items": ["x"], "label_token_ids": [1]}, status=400, headers=auth)["error"]
    assert err["param"] == "query"
    err = post(secure_server, "/v1/score", {**body, "label_token_ids": [10**7]}, status=400, headers=auth)["error"]
    assert err["param"] == "label_token_ids"
