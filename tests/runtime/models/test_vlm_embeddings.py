"""Multimodal embeddings against transformers on tiny random checkpoints (float32, within 1e-4):
GME-Qwen2-VL's way (Qwen2VLForConditionalGeneration served with is_embedding=True: the
decoder's last hidden state, L2-normalized) with an image, two images, a video and text
alone, batched and behind a cached prefix; the repeated image reuses its KV."""

from __future__ import annotations

import pytest
import torch
from mm_fixtures import (
    QWEN_IMAGE,
    QWEN_VIDEO,
    Qwen2VLReference,
    random_image,
    save_tiny_qwen2_vl,
    write_video,
)
from sgl.runtime import Engine

IMAGES = [random_image(1), random_image(2, (56, 40))]
END = "<|endoftext|>"  # GME ends every input with it and pools there (the default tokenizer: its eos)


@pytest.fixture(scope="module")
def gme(tmp_path_factory, default_tokenizer_folder):
    folder = save_tiny_qwen2_vl(str(tmp_path_factory.mktemp("gme")), default_tokenizer_folder)
    with Engine(folder, dtype="float32", is_embedding=True) as engine:
        yield engine, Qwen2VLReference(folder)


def last_hidden(reference: Qwen2VLReference, prompt: str, images: list, videos: list = ()) -> torch.Tensor:
    """transformers' final-norm hidden state of the last token, normalized (GME's embedding)."""
    enc = reference.inputs(prompt, images, list(videos))
    with torch.inference_mode():
        v = reference.model.model(**enc).last_hidden_state[0, -1]
    return v / v.norm()


def close(result: dict, expected: torch.Tensor) -> None:
    torch.testing.assert_close(torch.tensor(result["embedding"]), expected, atol=1e-4, rtol=0)


def test_gme_image_text_and_video_embeddings(gme, tmp_path):
    engine, ref = gme
    assert engine.task == "embed" and engine.embedding_dim == 64
    one = f"{QWEN_IMAGE}A photo of noise.{END}"
    two = f"Compare {QWEN_IMAGE} and {QWEN_IMAGE}.{END}"
    text = f"Only words here.{END}"
    clip = {"data": write_video(str(tmp_path / "clip.mp4"), frames=6, size=(32, 40)), "num_frames": 4}
    vid = f"{QWEN_VIDEO}What happens?{END}"
    alone = engine.encode(one, image_data=IMAGES[0])
    batch = engine.encode([one, two, text], image_data=[IMAGES[0], IMAGES[:2], None])
    video = engine.encode(vid, video_data=clip)
    close(alone, last_hidden(ref, one, IMAGES[:1]))
    for r, (p, ims) in zip(batch, [(one, IMAGES[:1]), (two, IMAGES[:2]), (text, [])]):
        close(r, last_hidden(ref, p, ims))
    pix = engine._media.video_inputs(clip, "video_data")
    close(video, last_hidden(ref, vid, [], [{k: pix[k] for k in ("pixel_values_videos", "video_grid_thw")}]))
    # the image again: its KV is reused, the vector is the same
    runs = engine.get_server_info()["vision_encoder_runs"]
    again = engine.encode(one, image_data=IMAGES[0])
    assert again["meta_info"]["cached_tokens"] > 0
    assert engine.get_server_info()["vision_encoder_runs"] == runs
    close(again, last_hidden(ref, one, IMAGES[:1]))
    with pytest.raises(ValueError, match="image placeholder"):
        engine.encode(text, image_data=IMAGES[0])
    engine.check_kv()


def test_gme_over_v1_embeddings(gme):
    """SGLang's multimodal /v1/embeddings input: {"text", "image"} items, each the image's
    placeholder then the text; a data URI image; the same vectors as Engine.encode."""
    import base64

    from fastapi.testclient import TestClient
    from mm_fixtures import png_bytes
    from sgl.runtime.server.app import create_app

    engine, ref = gme
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(IMAGES[0])).decode()
    items = [{"text": f"A photo of noise.{END}", "image": uri}, {"text": f"Only words here.{END}"}]
    with TestClient(create_app(engine)) as client:
        r = client.post("/v1/embeddings", json={"input": items})
        bad = client.post("/v1/embeddings", json={"input": [{"text": "x", "image": "data:image/png;base64,AAAA"}]})
        empty = client.post("/v1/embeddings", json={"input": [{}]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    close({"embedding": data[0]["embedding"]}, last_hidden(ref, f"{QWEN_IMAGE}A photo of noise.{END}", IMAGES[:1]))
    close({"embedding": data[1]["embedding"]}, last_hidden(ref, f"Only words here.{END}", []))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input", bad.text
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input.0", empty.text
