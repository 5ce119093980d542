"""Images and video over HTTP on a tiny random Qwen2-VL server (127.0.0.1): the openai client
with image_url and video_url parts, sgl.RuntimeEndpoint running image and video programs, and
malformed media each answered with a 400 while the server keeps serving."""

from __future__ import annotations

import base64
import os
import sys

import openai
import pytest
import requests
import sgl

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime"))
from mm_fixtures import (  # noqa: E402
    QWEN_IMAGE,
    QWEN_VIDEO,
    VIDEO_FRAMES,
    image_qa,
    png_bytes,
    png_header,
    random_image,
    video_qa,
    write_video,
)

GREEDY = {"max_new_tokens": 8, "temperature": 0}


@sgl.function
def four_views(s, image):
    s += sgl.user(sgl.image(image) + "Describe it.")
    forks = s.fork(4)
    for i, f in enumerate(forks):
        f += sgl.assistant("View " + str(i) + ":" + sgl.gen("view", max_tokens=4))
    s += "".join(f["view"] for f in forks)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    image = root / "a.png"
    image.write_bytes(png_bytes(random_image(1)))
    fake = root / "notes.mp4"
    fake.write_text("a text file, not a video")
    return {"image": str(image), "video": write_video(str(root / "clip.mp4"), frames=10, size=(32, 40)),
            "fake": str(fake)}


def b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def generate(server, text: str, **media) -> requests.Response:
    return requests.post(server.url + "/generate", json={"text": text, "sampling_params": GREEDY, **media}, timeout=120)


def chat_text(model: str, content: str) -> str:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)


def test_model_info_reports_modalities(mm_server):
    info = requests.get(mm_server.url + "/get_model_info", timeout=30).json()
    assert info["supports_image"] is True and info["supports_video"] is True
    assert info["image_token"] == QWEN_IMAGE and info["video_token"] == QWEN_VIDEO


def test_openai_image_url_and_video_url_parts(mm_server, mm_model, files):
    client = openai.OpenAI(base_url=mm_server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
    content = [{"type": "text", "text": "Look:"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(files["image"])}},
               {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(files["video"])}},
               {"type": "text", "text": "What moves?"}]
    out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}],
                                         max_tokens=8, temperature=0)
    # the same as the native route on the template with the model's placeholders in place
    text = chat_text(mm_model, f"Look:\n{QWEN_IMAGE}\n{QWEN_VIDEO}\nWhat moves?")
    native = generate(mm_server, text, image_data=[b64(files["image"])], video_data=[b64(files["video"])]).json()
    assert out.choices[0].message.content == native["text"]
    assert out.usage.prompt_tokens == native["meta_info"]["prompt_tokens"] > 35 + 40  # image and video tokens


def test_runtime_endpoint_runs_image_and_video_programs(mm_server, files):
    backend = sgl.RuntimeEndpoint(mm_server.url)
    assert backend.is_multimodal and backend.chat_template.image_token == QWEN_IMAGE
    st = image_qa.run(image=files["image"], question="What is it?", backend=backend, temperature=0)
    assert st.error() is None
    prompt = st.text()[: st.text().rindex(st["answer"])]
    assert st["answer"] == generate(mm_server, prompt, image_data=b64(files["image"])).json()["text"]
    # sgl.video sends PNG frames ("video:"): the same frames the server samples from the file
    st = video_qa.run(path=files["video"], question="What moves?", backend=backend, temperature=0)
    assert st.error() is None
    prompt = st.text()[: st.text().rindex(st["answer"])].replace(QWEN_IMAGE, QWEN_VIDEO)
    direct = generate(mm_server, prompt, video_data={"data": b64(files["video"]), "num_frames": VIDEO_FRAMES}).json()
    assert st["answer"] == direct["text"]
    # fork(4) children share the parent's image: one encoder run for a new image
    image = str(os.path.join(os.path.dirname(files["image"]), "b.png"))
    with open(image, "wb") as f:
        f.write(png_bytes(random_image(7)))
    runs = mm_server.server_info()["vision_encoder_runs"]
    assert four_views.run(image=image, backend=backend, temperature=0).error() is None
    assert mm_server.server_info()["vision_encoder_runs"] == runs + 1


def test_malformed_media_is_a_400_and_the_server_keeps_serving(mm_server, files):
    image_prompt, video_prompt = f"See {QWEN_IMAGE} now", f"See {QWEN_VIDEO} now"
    truncated = base64.b64encode(png_bytes(random_image(1))[:80]).decode()
    bomb = base64.b64encode(png_header(40000, 40000)).decode()
    cases = {
        "truncated png": (image_prompt, {"image_data": truncated}, "image_data: "),
        "text file as .mp4": (video_prompt, {"video_data": b64(files["fake"])}, "not a video decord can read"),
        "40000x40000 header": (image_prompt, {"image_data": bomb}, "more than 67108864 pixels"),
        "wrong base64": (image_prompt, {"image_data": "this is not base64!"}, "valid base64"),
        "a path on the server": (video_prompt, {"video_data": files["video"]}, "--allow-url-media"),
        "count": (image_prompt, {"image_data": [truncated, truncated]}, "1 image placeholder"),
    }
    for name, (text, media, message) in cases.items():
        r = generate(mm_server, text, **media)
        assert r.status_code == 400, (name, r.text)
        assert message in r.json()["error"]["message"], (name, r.text)
    client = openai.OpenAI(base_url=mm_server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
    fake = {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(files["fake"])}}
    with pytest.raises(openai.BadRequestError, match="decord"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [fake]}], max_tokens=4)
    assert generate(mm_server, image_prompt, image_data=b64(files["image"])).status_code == 200
    info = mm_server.wait_idle()
    assert info["held_slots"] == 0
