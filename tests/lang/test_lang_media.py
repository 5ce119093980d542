"""sgl.image and sgl.video programs on the in-process Runtime with a tiny random Qwen2-VL: the
model's own placeholder text, a video as one "video:" entry that the engine treats as the same
video given by path, fork children sharing the parent's image and its cached KV, select with
an image."""

from __future__ import annotations

import os
import sys

import pytest
import sgl

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime"))
from mm_fixtures import (  # noqa: E402
    QWEN_IMAGE,
    QWEN_VIDEO,
    VIDEO_FRAMES,
    image_qa,
    png_bytes,
    random_image,
    save_tiny_qwen2_vl,
    video_qa,
    write_video,
)


@sgl.function
def three_views(s, image, cached: list):
    s += sgl.user(sgl.image(image) + "Describe it.")
    forks = s.fork(3)
    for i, f in enumerate(forks):
        f += sgl.assistant("View " + str(i) + ":" + sgl.gen("view", max_tokens=4))
    s += "".join(f["view"] for f in forks)
    cached += [f.get_meta_info("view")["cached_tokens"] for f in forks]


@sgl.function
def pick(s, image):
    s += sgl.user(sgl.image(image) + "Is it bright or dark?")
    s += sgl.assistant(sgl.select("tone", choices=["bright", "dark"]))


@pytest.fixture(scope="module")
def media(tmp_path_factory, default_tokenizer_folder):
    root = tmp_path_factory.mktemp("media")
    folder = save_tiny_qwen2_vl(str(root / "qwen2vl"), default_tokenizer_folder)
    image = str(root / "a.png")
    with open(image, "wb") as f:
        f.write(png_bytes(random_image(1)))
    return folder, image, write_video(str(root / "clip.mp4"), frames=10, size=(32, 40))


@pytest.fixture(scope="module")
def rt(media):
    runtime = sgl.Runtime(model_path=media[0], dtype="float32")
    yield runtime
    runtime.shutdown()


def prompt_before(state, name: str) -> str:
    """The program's text up to the variable's generation."""
    text = state.text()
    return text[: text.rindex(state[name])]


def test_image_program_uses_the_models_placeholder(rt, media):
    assert rt.is_multimodal and rt.chat_template.image_token == QWEN_IMAGE
    st = image_qa.run(image=media[1], question="What is it?", backend=rt, temperature=0)
    assert st.error() is None
    prompt = prompt_before(st, "answer")
    direct = rt.engine.generate(prompt, {"max_new_tokens": 8, "temperature": 0}, image_data=png_bytes(random_image(1)))
    assert st["answer"] == direct["text"]
    again = image_qa.run(image=media[1], question="What is it?", backend=rt, temperature=0)
    assert again.get_meta_info("answer")["cached_tokens"] == direct["meta_info"]["prompt_tokens"] - 1


def test_video_program_is_the_video_the_engine_reads(rt, media):
    st = video_qa.run(path=media[2], question="What moves?", backend=rt, temperature=0)
    assert st.error() is None
    prompt = prompt_before(st, "answer").replace(QWEN_IMAGE, QWEN_VIDEO)
    direct = rt.engine.generate(prompt, {"max_new_tokens": 8, "temperature": 0},
                                video_data={"data": media[2], "num_frames": VIDEO_FRAMES})
    assert st["answer"] == direct["text"]


def test_fork_children_share_the_image_and_its_kv(rt, media):
    assert rt.flush_cache()
    runs = rt.engine.get_server_info()["vision_encoder_runs"]
    cached: list = []
    st = three_views.run(image=media[1], cached=cached, backend=rt, temperature=0)
    assert st.error() is None
    assert rt.engine.get_server_info()["vision_encoder_runs"] == runs + 1  # one image, encoded once
    image_tokens = 35  # 40x56 px: a 10x14 patch grid, 2x2 merged
    assert len(cached) == 3 and all(c > image_tokens for c in cached)  # the parent's prefix, image included


def test_select_with_an_image(rt, media):
    st = pick.run(image=media[1], backend=rt)
    assert st.error() is None and st["tone"] in ("bright", "dark")
