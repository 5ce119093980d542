"""Qwen3-VL and Qwen3-VL-MoE against transformers on tiny random checkpoints (DeepStack from
both tower blocks into the first two decoder layers, interleaved M-RoPE): prompt logprobs
(float32, 1e-4) and 16 greedy tokens with one image, two images and a video whose frames
follow their timestamps as Qwen3VLProcessor writes them; alone, through 8-token chunks
(smaller than any image: DeepStack adds only the chunk's rows), batched with text, behind a
cached prefix, and a repeated image reusing its KV."""

from __future__ import annotations

import types
from functools import partial

import numpy as np
import pytest
import torch
from mm_fixtures import (
    QWEN_IMAGE,
    QWEN_VIDEO,
    Qwen2VLReference,
    random_image,
)
from sgl.runtime.multimodal.random_qwen3_vl import save_random_qwen3_vl
from vlm_references import check_media, check_video_batched_cached_repeated, run_media

ONE = f"A photo: {QWEN_IMAGE} What is in it?"
TWO = f"First {QWEN_IMAGE} then {QWEN_IMAGE}: which is brighter?"
VID = f"Watch {QWEN_VIDEO} and {QWEN_IMAGE}: what moves?"
IMAGES = [random_image(1), random_image(2, (56, 40)), random_image(3, (33, 33))]


@pytest.fixture(scope="module", params=["dense", "moe"])
def folder(request, tmp_path_factory, default_tokenizer_folder):
    return save_random_qwen3_vl(str(tmp_path_factory.mktemp(f"qwen3vl_{request.param}")), default_tokenizer_folder,
                                moe=request.param == "moe")


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


@pytest.mark.parametrize("case", ["one", "two", "video"])
def test_parity_alone_and_chunked(engine, chunked, reference, video, case):
    prompt, images, vid = {"one": (ONE, IMAGES[:1], None), "two": (TWO, IMAGES[1:], None),
                           "video": (VID, IMAGES[:1], video)}[case]
    for e in (engine, chunked):
        e.flush_cache()
        check_media(e, run_media(e, prompt, images, vid), reference, prompt, images, vid)
        e.check_kv()


def test_batched_cached_prefix_and_repeated_image(engine, reference, video):
    check_video_batched_cached_repeated(engine, reference, (ONE, IMAGES[:1]), (VID, IMAGES[1:2]), video, 60)
