"""Idefics3 and SmolVLM against transformers on tiny random checkpoints saved with their real
PIL image processors (32 px tiles: an image resized to a 64 px longest edge is split into up
to 2x2 tiles plus its global image, 16 tokens a tile): prompt logprobs (float32, 1e-4) and 16
greedy tokens with one image and two of different sizes, alone, through chunks smaller than a
tile, batched with text and behind a cached prefix; a repeated image reuses its cached KV and
runs no encoder; the token layout (<row_r_col_c> and <global-img> tags among the <image>
rows) equals transformers' processors' for several sizes, split or not; the tower's
positions for a tile smaller than its table, or a padded one (Aria's), equal
Idefics3VisionEmbeddings'. SmolVLM also takes a video: frames as unsplit images in its
processor's text, alone, chunked, batched and behind a cached prefix."""

from __future__ import annotations

import pytest
import torch
from mm_fixtures import random_image, write_video
from sgl.runtime.multimodal.random_idefics import IDEFICS_IMAGE, SMOLVLM_VIDEO, save_random_idefics3
from vlm_references import GREEDY, Idefics3Reference, check, check_batched_cached_repeated, run

IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (20, 70))]
ONE = f"A photo: {IDEFICS_IMAGE} What is in it?"
TWO = f"First {IDEFICS_IMAGE} then {IDEFICS_IMAGE}: which is brighter?"


@pytest.fixture(scope="module", params=["idefics3", "smolvlm"])
def family(request):
    return request.param


@pytest.fixture(scope="module")
def folder(family, tmp_path_factory, default_tokenizer_folder):
    return save_random_idefics3(str(tmp_path_factory.mktemp(family)), default_tokenizer_folder, family)


@pytest.fixture(scope="module")
def reference(folder):
    return Idefics3Reference(folder)


def test_parity_alone_and_chunked(engine, chunked, reference):
    for prompt, images in ((ONE, IMAGES[:1]), (TWO, IMAGES[1:])):
        for e in (engine, chunked):
            e.flush_cache()
            check(run(e, prompt, images), reference, prompt, images)
            e.check_kv()


@pytest.mark.parametrize("family", ["smolvlm"], indirect=True)
def test_smolvlm_video_alone_and_chunked(engine, chunked, reference, tmp_path):
    """A 12-frame mp4 sampled to 4 frames: the intro ("four frames", duration), each frame's
    "Frame from MM:SS:" and unsplit image, on the sampled clip's clock. The processor's text is
    tokenized with the prompt's text around <video> (" You" with the space before it, the
    trailing "\n\n" with "Describe"), as transformers tokenizes the whole text."""
    video = {"data": write_video(str(tmp_path / "clip.mp4")), "num_frames": 4}
    prompt = f"User: {SMOLVLM_VIDEO}Describe it.<end_of_utterance>\nAssistant:"
    inputs = engine._media.video_inputs(video, "video_data")
    frames = [inputs["pixel_values"], len(inputs["frame_seconds"]) / inputs["duration"].item()]
    for e in (engine, chunked):
        e.flush_cache()
        out = e.generate(prompt, GREEDY, video_data=video, return_logprob=True, logprob_start_len=0)
        check(out, reference, prompt, frames)
        e.check_kv()
    assert "four frames" in reference.tokenizer.decode(reference.inputs(prompt, frames)["input_ids"][0])
    assert engine.get_server_info()["supports_video"]


def test_batched_with_text_behind_a_cached_prefix_and_repeated(engine, reference):
    check_batched_cached_repeated(engine, reference, (ONE, TWO), IMAGES, min_prefix=16)


@pytest.mark.parametrize("family", ["smolvlm"], indirect=True)
def test_smolvlm_video_batched_behind_a_cached_prefix_and_repeated(engine, reference, tmp_path):
    """The video batched with an image's prompt and a text one; the video's prompt again,
    longer, behind its cached prefix (its frames' KV reused: no encoder runs); the same clip
    again hits all but the last token."""
    video = {"data": write_video(str(tmp_path / "clip.mp4")), "num_frames": 4}
    prompt = f"User: {SMOLVLM_VIDEO}Describe it.<end_of_utterance>\nAssistant:"
    inputs = engine._media.video_inputs(video, "video_data")
    frames = [inputs["pixel_values"], len(inputs["frame_seconds"]) / inputs["duration"].item()]
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([prompt, text, ONE], GREEDY, video_data=[video, None, None],
                          image_data=[None, None, IMAGES[:1]], return_logprob=True, logprob_start_len=0)
    check(out[0], reference, prompt, frames)
    check(out[2], reference, ONE, IMAGES[:1])
    assert out[1]["output_ids"] == reference.greedy(text, [])
    runs = engine.get_server_info()["vision_encoder_runs"]
    longer = prompt + " Answer in one word."
    start = len(reference.inputs(prompt, frames)["input_ids"][0]) - 1
    again = engine.generate(longer, GREEDY, video_data=video, return_logprob=True, logprob_start_len=start)
    assert again["meta_info"]["cached_tokens"] >= start > 4 * reference.tokens  # past every frame
    check(again, reference, longer, frames, start)
    same = engine.generate(prompt, GREEDY, video_data=video)
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"]
    assert engine.get_server_info()["vision_encoder_runs"] == runs
    engine.check_kv()


@pytest.mark.parametrize("split", [True, False])
def test_token_layout_matches_transformers(engine, reference, split):
    processor = engine._media.image_processor
    processor.do_image_splitting = split
    try:
        for size in [(40, 56), (64, 40), (33, 33), (200, 30), (16, 300), (90, 90)]:
            img = random_image(7, size)
            ids = reference.inputs(TWO, [img, img], do_image_splitting=split)["input_ids"][0].tolist()
            expanded, mm = engine._media.expand(engine.tokenizer(TWO)["input_ids"], [img, img], [])
            assert len(expanded) == len(ids)
            rows = {it.offset + i for it in mm.items for i, t in enumerate(it.inputs["text_ids"].tolist()) if t < 0}
            assert sorted(rows) == [i for i, t in enumerate(ids) if t == reference.image_token]
            assert all(expanded[i] == t for i, t in enumerate(ids) if i not in rows)  # text and the tile tags
            assert (len(ids) - len(engine.tokenizer(TWO)["input_ids"]) > 100) == split
    finally:
        processor.do_image_splitting = True


def test_tower_positions_for_a_smaller_tile_equal_transformers():
    from sgl.runtime.layers.vision_siglip import Idefics3Embeddings
    from sgl.runtime.multimodal.towers import VisionTowerConfig
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
    from transformers.models.idefics3.modeling_idefics3 import Idefics3VisionEmbeddings

    hf = Idefics3VisionEmbeddings(Idefics3VisionConfig(hidden_size=8, image_size=28, patch_size=4)).eval()
    ours = Idefics3Embeddings(VisionTowerConfig(hidden_size=8, intermediate_size=8, num_layers=1, num_heads=1,
                                                image_size=28, patch_size=4, num_channels=3, norm_eps=1e-6,
                                                hidden_act="gelu"))
    ours.load_state_dict(hf.state_dict())
    for h, w in [(28, 28), (20, 12), (12, 28), (4, 4)]:  # 7x7 positions; tiles of 5x3, 3x7, 1x1 patches
        pixels = torch.randn(2, 3, h, w)
        mask = torch.ones(2, h // 4, w // 4, dtype=torch.bool)
        with torch.no_grad():
            assert torch.equal(ours(pixels), hf(pixels, mask))
    mask = torch.zeros(3, 7, 7, dtype=torch.bool)  # Aria's padded crops: the real patches a top-left block
    for i, (rows, cols) in enumerate([(7, 7), (3, 5), (6, 1)]):
        mask[i, :rows, :cols] = True
    pixels = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(ours(pixels, mask), hf(pixels, mask))
