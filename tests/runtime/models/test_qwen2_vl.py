"""Qwen2-VL and Qwen2.5-VL against transformers on tiny random checkpoints saved with Qwen2-VL's PIL image
processor: prompt logprobs (float32, 1e-4) and 16 greedy tokens with one image, two images of
different sizes and a video file (written with PyAV, read back with decord), alone, batched
with text, behind a cached prefix (M-RoPE positions of cached and decoded tokens) and through
chunks smaller than an image; M-RoPE positions equal transformers' get_rope_index."""

from __future__ import annotations

import pytest
import torch
from mm_fixtures import (
    QWEN_IMAGE,
    QWEN_VIDEO,
    Qwen2VLReference,
    assert_qwen_parity,
    png_bytes,
    random_image,
    save_tiny_qwen2_vl,
    write_video,
)
from sgl.runtime import Engine

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
ONE = f"A photo: {QWEN_IMAGE} What is in it?"
TWO = f"First {QWEN_IMAGE} then {QWEN_IMAGE}: which is brighter?"
VID = f"Watch {QWEN_VIDEO} and {QWEN_IMAGE}: what moves?"
FRAMES = 4


@pytest.fixture(scope="module", params=["2", "2.5"])
def folder(request, tmp_path_factory, default_tokenizer_folder):
    return save_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen2vl")), default_tokenizer_folder, request.param)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = write_video(str(tmp_path_factory.mktemp("clip") / "clip.mp4"), frames=10, size=(32, 40))
    return {"data": path, "num_frames": FRAMES}


@pytest.fixture(scope="module")
def reference(folder):
    return Qwen2VLReference(folder)


IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (33, 33))]


def ref_videos(engine: Engine, video: dict | None) -> list:
    """The video as the engine processes it (decord frames, patches, 2.5's timing), for the
    reference (transformers' video processor needs torchvision)."""
    return [] if video is None else [engine._media.video_inputs(video, "video_data")]


def check(engine: Engine, result: dict, reference: Qwen2VLReference, prompt: str, images: list,
          video: dict | None = None, start: int = 0) -> None:
    assert_qwen_parity(result, reference, prompt, images, ref_videos(engine, video), start)


def run(engine: Engine, prompt, images, video=None, start: int = 0):
    return engine.generate(prompt, GREEDY, image_data=images, video_data=video, return_logprob=True,
                           logprob_start_len=start)


@pytest.mark.parametrize("case", ["one", "two", "video"])
def test_parity_alone_and_chunked(engine, chunked, reference, video, case):
    prompt, images, vid = {"one": (ONE, IMAGES[:1], None), "two": (TWO, IMAGES[1:], None),
                           "video": (VID, IMAGES[:1], video)}[case]
    for e in (engine, chunked):
        e.flush_cache()
        check(e, run(e, prompt, images, vid), reference, prompt, images, vid)
        e.check_kv()


def test_batched_with_text_and_behind_a_cached_prefix(engine, reference, video):
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([ONE, text, VID], GREEDY, image_data=[IMAGES[0], None, IMAGES[1]],
                          video_data=[None, None, video], return_logprob=True, logprob_start_len=0)
    check(engine, out[0], reference, ONE, IMAGES[:1])
    check(engine, out[2], reference, VID, IMAGES[1:2], video)
    assert out[1]["output_ids"] == reference.greedy(text, [])
    # a longer prompt starting with VID: the video and image come from the radix cache, the
    # rest continues their M-RoPE positions
    longer = VID + " Answer in one word."
    start = len(reference.inputs(VID, IMAGES[1:2], ref_videos(engine, video))["input_ids"][0]) - 1
    again = run(engine, longer, IMAGES[1:2], video, start)
    assert again["meta_info"]["cached_tokens"] >= start > 60
    check(engine, again, reference, longer, IMAGES[1:2], video, start)
    engine.check_kv()


def test_cache_keys_images_by_content(engine, reference):
    engine.flush_cache()
    runs = engine.get_server_info()["vision_encoder_runs"]
    first = engine.generate(ONE, GREEDY, image_data=IMAGES[0])
    prefix = len(reference.tokenizer("A photo: <|vision_start|>")["input_ids"])
    same = engine.generate(ONE, GREEDY, image_data=png_bytes(IMAGES[0]))
    other = engine.generate(ONE, GREEDY, image_data=IMAGES[2])
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == first["output_ids"]
    assert other["meta_info"]["cached_tokens"] == prefix
    assert other["output_ids"] == reference.greedy(ONE, IMAGES[2:])
    assert engine.get_server_info()["vision_encoder_runs"] == runs + 2
    engine.check_kv()


def test_token_counts_and_mrope_positions_match_transformers(engine, reference, video):
    sizes = [(40, 56), (64, 40), (33, 33), (200, 30), (16, 300), (90, 90)]
    for i, size in enumerate(sizes):
        img = random_image(10 + i, size)
        enc = reference.inputs(VID, [img], ref_videos(engine, video))
        expanded, mm = engine._media.expand(engine.tokenizer(VID)["input_ids"], [img], [video])
        ids = enc["input_ids"][0].tolist()
        assert len(expanded) == len(ids)
        kinds = {reference.image_token: "image", reference.video_token: "video"}
        assert [(it.modality, p) for it in mm.items for p in range(it.offset, it.end)] == \
            sorted(((kinds[t], p) for p, t in enumerate(ids) if t in kinds), key=lambda x: x[1])
        timing = {"second_per_grid_ts": enc["second_per_grid_ts"]} if "second_per_grid_ts" in enc else {}
        positions, delta = reference.model.model.get_rope_index(
            enc["input_ids"], enc["mm_token_type_ids"], enc["image_grid_thw"], enc["video_grid_thw"], **timing)
        assert torch.equal(mm.mrope, positions[:, 0])
        assert mm.mrope_delta == int(delta)


def test_server_info_and_bad_video(engine, tmp_path):
    info = engine.get_server_info()
    assert info["supports_image"] is True and info["supports_video"] is True
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all")
    with pytest.raises(ValueError, match="video_data: not a video decord can read"):
        engine.generate(VID, GREEDY, image_data=IMAGES[0], video_data=str(fake))
    with pytest.raises(ValueError, match="video_data: the prompt has 1 video placeholder"):
        engine.generate(VID, GREEDY, image_data=IMAGES[0])
    engine.check_kv()


def test_retraction_keeps_the_images(folder, reference):
    """Six requests with their own images in a pool of half their demand: retracted requests
    resume with their images (embedded again) and their M-RoPE positions past the prompt."""
    images = [random_image(20 + i, (40, 40 + 8 * i)) for i in range(6)]
    lengths = [len(reference.inputs(ONE, [im], [])["input_ids"][0]) for im in images]
    with Engine(folder, dtype="float32", max_total_tokens=sum(n + 16 for n in lengths) // 2) as e:
        out = e.generate([ONE] * 6, GREEDY, image_data=images)
        assert e.get_server_info()["retractions"] > 0
        for res, im in zip(out, images):
            assert res["output_ids"] == reference.greedy(ONE, [im])
        e.check_kv()
