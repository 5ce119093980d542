"""InternVL, Mistral3, LLaVA with a Pixtral tower and Llama 4 against transformers on tiny
random checkpoints saved with their PIL image processors (GotOcr2's: 32 px tiles, 1..4 tiles
and a thumbnail; Pixtral's: any size fitted into 56 px; Llama 4's, ported to PIL in
multimodal/llama4_images.py: 32 px tiles on the best canvas of up to 4, and a global one): prompt logprobs (float32, 1e-4) and 16
greedy tokens with one image and two of different sizes, alone, through chunks smaller than
an image, batched with text and behind a cached prefix; a repeated image reuses its cached KV
and runs no encoder; token layouts (<img> ... </img>, rows closed by [IMG_BREAK] / [IMG_END],
Llama 4's tile separators) equal transformers' processors' for several sizes; vLLM's PixtralForConditionalGeneration
name serves the same folder. InternVL also takes a video (<video>, a tokenizer token): frames
sampled by InternVLVideoProcessor's rule, each one unsplit tile written "FrameN: <img>...</img>"
as InternVLProcessor.replace_video_token does; alone, with an image, chunked, batched and
behind a cached prefix."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from mm_fixtures import random_image, write_video
from sgl.runtime import Engine
from sgl.runtime.multimodal.random_intern import (
    INTERN_IMAGE,
    INTERN_VIDEO,
    LLAMA4_IMAGE,
    PIXTRAL_IMAGE,
    save_random_internvl,
    save_random_llama4,
    save_random_pixtral,
)
from vlm_references import (
    GREEDY,
    InternVLReference,
    Llama4Reference,
    PixtralReference,
    check,
    check_alone_and_chunked,
    check_batched_cached_repeated,
    run,
)


def transformers_source(module: str, names: set[str], scope: dict, cls: str | None = None) -> dict:
    """Functions (methods of `cls`) read from transformers' source of models/`module`.py, whose
    module imports torchvision, which is not installed."""
    import ast
    import inspect

    import transformers

    path = os.path.join(os.path.dirname(inspect.getfile(transformers)), "models", f"{module}.py")
    with open(path) as f:
        body = ast.parse(f.read()).body
    if cls is not None:
        body = next(n for n in body if getattr(n, "name", None) == cls).body
    exec(compile(ast.Module([n for n in body if getattr(n, "name", None) in names], []), path, "exec"), scope)
    return scope


class InternVLVideoReference(InternVLReference):
    """InternVLReference that also takes a video (a {"data": path, "num_frames": n} among the
    media, in prompt order): the clip decoded with decord at the frames transformers'
    InternVLVideoProcessor.sample_frames picks, each frame through the slow image processor
    unsplit, the prompt's <video> replaced by InternVLProcessor.replace_video_token's text (on a
    stand-in processor: the real one needs torchvision) and the whole text tokenized, as
    InternVLProcessor does."""

    def frames(self, video: dict) -> torch.Tensor:
        import decord
        from PIL import Image
        from transformers.video_utils import VideoMetadata

        sample = transformers_source("internvl/video_processing_internvl", {"sample_frames"}, {"torch": torch},
                                     "InternVLVideoProcessor")["sample_frames"]
        reader = decord.VideoReader(video["data"], ctx=decord.cpu(0))
        meta = VideoMetadata(total_num_frames=len(reader), fps=reader.get_avg_fps())
        stand_in = type("VideoProcessor", (), {"num_frames": None, "initial_shift": True})()
        idx = sample(stand_in, meta, num_frames=video["num_frames"]).tolist()
        frames = reader.get_batch(idx).asnumpy()
        return torch.cat([self.image_processor(images=[Image.fromarray(f)], crop_to_patches=False,
                                               return_tensors="pt")["pixel_values"] for f in frames])

    def inputs(self, prompt: str, media: list):
        import re
        from types import SimpleNamespace

        from transformers.models.internvl.processing_internvl import InternVLProcessor

        if not any(isinstance(m, dict) for m in media):
            return super().inputs(prompt, media)
        stand_in = SimpleNamespace(start_image_token="<img>", end_image_token="</img>", image_token=INTERN_IMAGE,
                                   image_seq_length=16)
        given, pixels = iter(media), []

        def replace(match: re.Match) -> str:
            m = next(given)
            if isinstance(m, dict):
                pixels.append(self.frames(m))
                return InternVLProcessor.replace_video_token(stand_in, {"pixel_values_videos": [pixels[-1]]}, 0)
            enc = self.image_processor(images=[m], crop_to_patches=True, return_tensors="pt")
            pixels.append(enc["pixel_values"])
            return InternVLProcessor.replace_image_token(stand_in, enc, 0)

        text = re.sub(f"{re.escape(INTERN_IMAGE)}|{re.escape(INTERN_VIDEO)}", replace, prompt)
        return {"pixel_values": torch.cat(pixels), "input_ids": torch.tensor([self.tokenizer(text)["input_ids"]])}


IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (33, 33))]
FAMILIES = {"internvl": (INTERN_IMAGE, InternVLVideoReference), "mistral3": (PIXTRAL_IMAGE, PixtralReference),
            "llava-pixtral": (PIXTRAL_IMAGE, PixtralReference), "llama4": (LLAMA4_IMAGE, Llama4Reference)}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):  # one module-scoped checkpoint per family (a test may name its family: indirect)
    return request.param


@pytest.fixture(scope="module")
def folder(family, tmp_path_factory, default_tokenizer_folder):
    out = str(tmp_path_factory.mktemp(family))
    if family in ("internvl", "llama4"):
        return (save_random_internvl if family == "internvl" else save_random_llama4)(out, default_tokenizer_folder)
    return save_random_pixtral(out, default_tokenizer_folder, family.removesuffix("-pixtral"))


@pytest.fixture(scope="module")
def reference(family, folder):
    return FAMILIES[family][1](folder)


@pytest.fixture(scope="module")
def prompts(family):
    image = FAMILIES[family][0]
    return f"A photo: {image} What is in it?", f"First {image} then {image}: which is brighter?"


def test_parity_alone_and_chunked(engine, chunked, reference, prompts):
    check_alone_and_chunked((engine, chunked), reference, prompts, (IMAGES[:1], IMAGES[1:]))


def test_batched_with_text_behind_a_cached_prefix_and_repeated(engine, reference, prompts):
    check_batched_cached_repeated(engine, reference, prompts, IMAGES, min_prefix=32)


def test_token_layout_matches_transformers(engine, reference, prompts):
    two = prompts[1]
    for size in [(40, 56), (64, 40), (33, 33), (200, 30), (16, 300), (90, 90)]:
        img = random_image(7, size)
        ids = reference.inputs(two, [img, img])["input_ids"][0].tolist()
        expanded, mm = engine._media.expand(engine.tokenizer(two)["input_ids"], [img, img], [])
        assert len(expanded) == len(ids)
        rows = {it.offset + i for it in mm.items for i, t in enumerate(it.inputs["text_ids"].tolist()) if t < 0}
        assert sorted(rows) == [i for i, t in enumerate(ids) if t == reference.image_token]
        assert all(expanded[i] == t for i, t in enumerate(ids) if i not in rows)  # text, <img>, [IMG_BREAK]


VIDEO_PROMPTS = (f"Watch {INTERN_VIDEO} and say what moves.", f"Watch {INTERN_VIDEO} then {INTERN_IMAGE}: which is it?")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 12-frame mp4 sampled to 4 frames (transformers' rule: 1, 4, 7, 10; sgl's default
    spread would take 0, 4, 7, 11)."""
    return {"data": write_video(str(tmp_path_factory.mktemp("clip") / "clip.mp4")), "num_frames": 4}


def run_video(engine, prompt: str, clip: dict, images: list, start: int = 0):
    return engine.generate(prompt, GREEDY, video_data=clip, image_data=images or None, return_logprob=True,
                           logprob_start_len=start)


@pytest.mark.parametrize("family", ["internvl"], indirect=True)
def test_internvl_video_alone_with_an_image_and_chunked(engine, chunked, reference, clip):
    """The video alone and before an image (pixels in prompt order), on the whole-prefill
    engine and through 8-token chunks (a frame is 18 tokens); "Frame1: " is tokenized with the
    prompt's "Watch " before it, as transformers tokenizes the expanded text."""
    for prompt, images in zip(VIDEO_PROMPTS, ([], IMAGES[1:2])):
        media = [clip, *images]
        for e in (engine, chunked):
            e.flush_cache()
            check(run_video(e, prompt, clip, images), reference, prompt, media)
            e.check_kv()
    ids = reference.inputs(VIDEO_PROMPTS[0], [clip])["input_ids"][0].tolist()
    assert ids.count(reference.image_token) == 4 * 16 and ids.count(reference.wrap[0]) == 4
    assert "Frame4: " in reference.tokenizer.decode(ids)
    assert engine.get_server_info()["supports_video"]


@pytest.mark.parametrize("family", ["internvl"], indirect=True)
def test_internvl_video_batched_behind_a_cached_prefix_and_repeated(engine, reference, clip):
    """The video batched with an image's prompt and a text one; the video's prompt again,
    longer, behind its cached prefix (past every frame); the same clip again hits all but
    the last token and runs no encoder."""
    prompt, one = VIDEO_PROMPTS[0], f"A photo: {INTERN_IMAGE} What is in it?"
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([prompt, text, one], GREEDY, video_data=[clip, None, None],
                          image_data=[None, None, IMAGES[:1]], return_logprob=True, logprob_start_len=0)
    check(out[0], reference, prompt, [clip])
    check(out[2], reference, one, IMAGES[:1])
    assert out[1]["output_ids"] == reference.greedy(text, [])
    runs = engine.get_server_info()["vision_encoder_runs"]
    longer = prompt + " Answer in one word."
    start = len(reference.inputs(prompt, [clip])["input_ids"][0]) - 1
    again = run_video(engine, longer, clip, [], start)
    assert again["meta_info"]["cached_tokens"] >= start > 4 * 18  # past every frame
    check(again, reference, longer, [clip], start)
    same = engine.generate(prompt, GREEDY, video_data=dict(clip))
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"]
    assert engine.get_server_info()["vision_encoder_runs"] == runs
    engine.check_kv()


def test_internvl_frame_sampling_equals_transformers():
    from sgl.runtime.models.internvl import InternVLForConditionalGeneration
    from transformers.video_utils import VideoMetadata

    sample = transformers_source("internvl/video_processing_internvl", {"sample_frames"}, {"torch": torch},
                                 "InternVLVideoProcessor")["sample_frames"]
    stand_in = type("VideoProcessor", (), {"num_frames": None, "initial_shift": True})()
    for total, n in [(12, 4), (10, 4), (7, 3), (100, 8), (8, 8), (301, 7), (1, 1)]:
        expected = sample(stand_in, VideoMetadata(total_num_frames=total, fps=8.0), num_frames=n).tolist()
        assert InternVLForConditionalGeneration.sample_frames(total, n).tolist() == expected
    assert InternVLForConditionalGeneration.sample_frames(3, 8).tolist() == [0, 1, 2]  # fewer frames than asked


@pytest.mark.parametrize("family", ["llava-pixtral"], indirect=True)
def test_vllm_pixtral_name_serves_the_folder(family, folder, reference, prompts, tmp_path):
    alias = str(tmp_path / "pixtral")
    shutil.copytree(folder, alias)
    with open(os.path.join(alias, "config.json")) as f:
        config = json.load(f)
    config["architectures"] = ["PixtralForConditionalGeneration"]
    with open(os.path.join(alias, "config.json"), "w") as f:
        json.dump(config, f)
    with Engine(alias, dtype="float32") as e:
        assert e._media.model_cls.__name__ == "LlavaPixtralForConditionalGeneration"
        check(run(e, prompts[0], IMAGES[:1]), reference, prompts[0], IMAGES[:1])


def transformers_llama4_canvas():
    """transformers' own canvas functions of Llama4ImageProcessor, read from its source (the
    module imports torchvision, which is not installed): (supported, best_fit, fit)."""
    import math
    from collections import defaultdict
    from functools import lru_cache

    from transformers.image_utils import SizeDict

    names = {"get_factors", "find_supported_resolutions", "get_best_fit", "get_max_res_without_distortion"}
    scope = transformers_source("llama4/image_processing_llama4", names, {
        "torch": torch, "math": math, "defaultdict": defaultdict, "lru_cache": lru_cache, "SizeDict": SizeDict})
    return scope["find_supported_resolutions"], scope["get_best_fit"], scope["get_max_res_without_distortion"]


def test_llama4_canvases_equal_transformers():
    from sgl.runtime.multimodal.llama4_images import (
        best_canvas,
        fit_without_distortion,
        supported_canvases,
    )
    from transformers.image_utils import SizeDict

    supported, best_fit, fit = transformers_llama4_canvas()
    for tiles in (1, 4, 16):
        canvases = supported(tiles, SizeDict(height=336, width=336))
        assert supported_canvases(tiles, 336) == [tuple(c) for c in canvases]
        for h, w in [(40, 56), (336, 336), (200, 900), (1000, 300), (33, 33), (700, 701), (2000, 1500)]:
            ours = best_canvas(h, w, supported_canvases(tiles, 336), False)
            assert ours == tuple(int(v) for v in best_fit((h, w), torch.tensor(canvases)))
            assert fit_without_distortion(h, w, *ours) == fit((h, w), ours)
