"""Qwen3-VL and Qwen3-VL-MoE against transformers on tiny random checkpoints (DeepStack from
both tower blocks into the first two decoder layers, interleaved M-RoPE): prompt logprobs
(float32, 1e-4) and 16 greedy tokens with one image, two images and a video whose frames
follow their timestamps as Qwen3VLProcessor writes them; alone, through 8-token chunks
(smaller than any image: DeepStack adds only the chunk's rows), batched with text, behind a
cached prefix, and a repeated image reusing its KV."""

from __future__ import annotations

import os
import types
from functools import partial

import numpy as np
import pytest
import torch
from mm_fixtures import (
    QWEN_IMAGE,
    QWEN_VIDEO,
    Qwen2VLReference,
    assert_qwen_parity,
    png_bytes,
    random_image,
    write_video,
)
from sgl.runtime.multimodal.media import load_clip
from sgl.runtime.multimodal.random_qwen3_vl import save_random_qwen3_vl

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
ONE = f"A photo: {QWEN_IMAGE} What is in it?"
TWO = f"First {QWEN_IMAGE} then {QWEN_IMAGE}: which is brighter?"
VID = f"Watch {QWEN_VIDEO} and {QWEN_IMAGE}: what moves?"
IMAGES = [random_image(1), random_image(2, (56, 40)), random_image(3, (33, 33))]
FRAMES = 4


@pytest.fixture(scope="module", params=["dense", "moe"])
def folder(request, tmp_path_factory, default_tokenizer_folder):
    return save_random_qwen3_vl(str(tmp_path_factory.mktemp(f"qwen3vl_{request.param}")), default_tokenizer_folder,
                                moe=request.param == "moe")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = write_video(str(tmp_path_factory.mktemp("clip") / "clip.mp4"), frames=10, size=(32, 40))
    return {"data": path, "num_frames": FRAMES}


class Qwen3VLReference(Qwen2VLReference):
    """Qwen2VLReference with each video's prompt text written by Qwen3VLProcessor's own
    replace_video_token (timestamps per temporal patch), called on a stand-in processor."""

    def inputs(self, prompt: str, images: list, videos: list) -> dict:
        from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

        stand_in = types.SimpleNamespace(
            video_processor=types.SimpleNamespace(merge_size=2, temporal_patch_size=2),
            vision_start_token="<|vision_start|>", vision_end_token="<|vision_end|>", video_token="<|video_pad|>",
            _calculate_timestamps=partial(Qwen3VLProcessor._calculate_timestamps, None))
        for v in videos:
            meta = types.SimpleNamespace(fps=v["fps"], frames_indices=np.arange(v["frames"]))
            text = Qwen3VLProcessor.replace_video_token(stand_in, {**v, "video_metadata": [meta]}, 0)
            prompt = prompt.replace(QWEN_VIDEO, QWEN_VIDEO.replace("<|video_pad|>", text.replace("<|video_pad|>", "\0")), 1)
        enc = super().inputs(prompt.replace(QWEN_VIDEO, ""), images, [])
        ids = self.tokenizer(prompt.replace("\0", "<|video_pad|>"))["input_ids"]
        counts = iter([int(g.prod()) // self.merge for g in enc.get("image_grid_thw", [])])
        expanded: list[int] = []
        for t in ids:
            expanded += [t] * next(counts) if t == self.image_token else [t]
        input_ids = torch.tensor([expanded])
        if videos:
            enc["pixel_values_videos"] = torch.cat([v["pixel_values_videos"] for v in videos])
            enc["video_grid_thw"] = torch.cat([v["video_grid_thw"] for v in videos])
        kinds = (input_ids == self.image_token).int() + 2 * (input_ids == self.video_token).int()
        return {**enc, "input_ids": input_ids, "mm_token_type_ids": kinds}


@pytest.fixture(scope="module")
def reference(folder):
    return Qwen3VLReference(folder)


def ref_videos(engine, video: dict | None) -> list:
    """The video's pixels as the engine makes them, with the sampled clip's fps and frame count."""
    if video is None:
        return []
    frames, fps = load_clip(video["data"], video["num_frames"])
    inputs = engine._media.video_inputs(video, "video_data")
    return [{"pixel_values_videos": inputs["pixel_values_videos"], "video_grid_thw": inputs["video_grid_thw"],
             "fps": fps, "frames": len(frames)}]


def check(engine, result: dict, reference: Qwen3VLReference, prompt: str, images: list, video=None, start: int = 0):
    assert_qwen_parity(result, reference, prompt, images, ref_videos(engine, video), start)


def run(engine, prompt, images, video=None, start: int = 0):
    return engine.generate(prompt, GREEDY, image_data=images, video_data=video, return_logprob=True,
                           logprob_start_len=start)


@pytest.mark.parametrize("case", ["one", "two", "video"])
def test_parity_alone_and_chunked(folder, engine, chunked, reference, video, case):
    if case == "two" and os.path.basename(folder).startswith("qwen3vl_moe"):
        pytest.skip("the MoE decoder's parity: one image and the video suffice (test time)")
    prompt, images, vid = {"one": (ONE, IMAGES[:1], None), "two": (TWO, IMAGES[1:], None),
                           "video": (VID, IMAGES[:1], video)}[case]
    for e in (engine, chunked):
        e.flush_cache()
        check(e, run(e, prompt, images, vid), reference, prompt, images, vid)
        e.check_kv()


def test_batched_cached_prefix_and_repeated_image(folder, engine, reference, video):
    if os.path.basename(folder).startswith("qwen3vl_moe"):
        pytest.skip("batching and caching do not depend on the decoder's MLP (test time)")
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([ONE, text, VID], GREEDY, image_data=[IMAGES[0], None, IMAGES[1]],
                          video_data=[None, None, video], return_logprob=True, logprob_start_len=0)
    check(engine, out[0], reference, ONE, IMAGES[:1])
    check(engine, out[2], reference, VID, IMAGES[1:2], video)
    assert out[1]["output_ids"] == reference.greedy(text, [])
    # behind a cached prefix holding the video and the image: the rest continues their positions
    longer = VID + " Answer in one word."
    start = len(reference.inputs(VID, IMAGES[1:2], ref_videos(engine, video))["input_ids"][0]) - 1
    again = run(engine, longer, IMAGES[1:2], video, start)
    assert again["meta_info"]["cached_tokens"] >= start > 60
    check(engine, again, reference, longer, IMAGES[1:2], video, start)
    # the same image again (as PNG bytes) reuses its KV; the encoder does not run
    runs = engine.get_server_info()["vision_encoder_runs"]
    same = engine.generate(ONE, GREEDY, image_data=png_bytes(IMAGES[0]))
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"]
    assert engine.get_server_info()["vision_encoder_runs"] == runs
    engine.check_kv()
