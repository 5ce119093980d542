"""CLIPModel against transformers on a tiny random checkpoint (float32, within 1e-4): the text
side's projected vector at <|endoftext|> (here the tokenizer's [SEP]), alone, in a batch of
mixed lengths and behind a cached prefix; normalize=False gives text_projection(pooler_output).
The image side: Engine.encode(image_data=...) gives get_image_features (normalized unless asked
not to), through the folder's PIL CLIPImageProcessor."""

from __future__ import annotations

import pytest
import torch
from pooling_fixtures import BERT_VOCAB, encoder_prompts, minilm_folder, save_model
from sgl.runtime import Engine

EOS = 102  # [SEP]: the MiniLM tokenizer ends every text with it, as CLIP's ends with <|endoftext|>


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    text = dict(vocab_size=BERT_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=96, max_position_embeddings=77, eos_token_id=EOS, bos_token_id=101,
                pad_token_id=0, initializer_factor=4.0)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                  image_size=32, patch_size=16)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=48, architectures=["CLIPModel"])
    folder = str(tmp_path_factory.mktemp("clip"))
    ref = save_model(CLIPModel, config, folder, minilm_folder())
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder, ref


def features(ref, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return ref.text_projection(ref.text_model(torch.tensor([ids])).pooler_output)[0]


def test_clip_text_embeddings(clip):
    folder, ref = clip
    ids = encoder_prompts()
    longer = ids[3][:-1] + ids[1]  # ids[3] without its [SEP], then a whole prompt: one [SEP], at the end
    with Engine(folder, dtype="float32") as engine:
        assert engine.task == "embed" and engine.embedding_dim == 48 and engine.max_input_tokens == 77
        alone = [engine.encode(input_ids=p) for p in ids]
        batch = engine.encode(input_ids=ids)
        cached = engine.encode(input_ids=longer)
        raw = engine.encode(input_ids=ids[0], normalize=False)
        text = engine.encode("a photo of a cat", normalize=False)
        ids_of_text = list(engine.tokenizer("a photo of a cat")["input_ids"])
        with pytest.raises(ValueError, match="limit of 77"):
            engine.encode(input_ids=[101] * 78)
        with pytest.raises(ValueError, match="48-dimensional"):
            engine.encode(input_ids=ids[0], dimensions=64)
        engine.check_kv()
    assert cached["meta_info"]["cached_tokens"] > 0
    for p, one, many in zip(ids, alone, batch):
        v = features(ref, p)
        torch.testing.assert_close(torch.tensor(one["embedding"]), v / v.norm(), atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(many["embedding"]), v / v.norm(), atol=1e-4, rtol=0)
    v = features(ref, longer)
    torch.testing.assert_close(torch.tensor(cached["embedding"]), v / v.norm(), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(raw["embedding"]), features(ref, ids[0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(text["embedding"]), features(ref, ids_of_text), atol=1e-4, rtol=0)


def test_clip_image_embeddings(clip):
    from mm_fixtures import png_bytes, random_image
    from transformers import CLIPImageProcessor

    folder, ref = clip
    images = [random_image(1), random_image(2, (56, 40))]
    with Engine(folder, dtype="float32") as engine:
        both = engine.encode(image_data=images)
        one = engine.encode(image_data=png_bytes(images[1]), normalize=False)
        with pytest.raises(ValueError, match="image_data"):
            engine.encode(image_data=b"not an image")
        with pytest.raises(ValueError, match="video"):
            engine.encode(image_data=images[0], video_data=images)
        text = engine.encode("a photo of a cat")  # the text side still serves beside it
        served = served_vectors(engine, [{"text": "a photo of a cat"}, {"image": data_uri(images[0])}])
    pixels = CLIPImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        v = ref.get_image_features(pixel_values=pixels)
        v = getattr(v, "pooler_output", v)
    assert len(both) == 2 and len(text["embedding"]) == 48
    for r, e in zip(both, v):
        torch.testing.assert_close(torch.tensor(r["embedding"]), e / e.norm(), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(one["embedding"]), v[1], atol=1e-4, rtol=0)
    # /v1/embeddings items: a text or an image each, answered in order
    assert served[0] == pytest.approx(text["embedding"], abs=1e-6)
    assert served[1] == pytest.approx(both[0]["embedding"], abs=1e-6)


def data_uri(image) -> str:
    import base64

    from mm_fixtures import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def served_vectors(engine, items: list[dict]) -> list[list[float]]:
    from fastapi.testclient import TestClient
    from sgl.runtime.server.app import create_app

    with TestClient(create_app(engine)) as client:
        r = client.post("/v1/embeddings", json={"input": items})
        both = client.post("/v1/embeddings", json={"input": [{"text": "x", "image": data_uri(random_image_of(3))}]})
    assert r.status_code == 200, r.text
    assert both.status_code == 400 and both.json()["error"]["param"] == "input.0", both.text
    return [d["embedding"] for d in r.json()["data"]]


def random_image_of(seed: int):
    from mm_fixtures import random_image

    return random_image(seed)
