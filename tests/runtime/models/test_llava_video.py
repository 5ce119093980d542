"""LLaVA-OneVision (CLIP tower, anyres_max_1 so large grids shrink) and LLaVA-NeXT-Video (frames
pooled 2x) against transformers on tiny random checkpoints saved with their PIL image
processors: prompt logprobs (float32, 1e-4) and 16 greedy tokens with one image, two images
(OneVision: one tile each), and a video file (PyAV, decord), alone and chunked; behind a cached
prefix; token counts equal the family processor's own rule for images of several sizes."""

from __future__ import annotations

import types

import pytest
import torch
from mm_fixtures import random_image, write_video
from sgl.runtime import Engine
from sgl.runtime.multimodal.random_checkpoints import (
    save_random_llava_next_video,
    save_random_llava_onevision,
)

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
ONE = "A photo: <image> What is in it?"
TWO = "First <image> then <image>: which is brighter?"
VID = "Watch <video> closely: what moves?"
IMAGES = [random_image(1, (40, 90)), random_image(2, (64, 40)), random_image(3, (33, 33))]


@pytest.fixture(scope="module", params=["onevision", "next_video"])
def folder(request, tmp_path_factory, default_tokenizer_folder):
    save = save_random_llava_onevision if request.param == "onevision" else save_random_llava_next_video
    return save(str(tmp_path_factory.mktemp(request.param)), default_tokenizer_folder)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return {"data": write_video(str(tmp_path_factory.mktemp("clip") / "clip.mp4"), frames=10, size=(32, 40)),
            "num_frames": 3}


class Reference:
    """transformers' model; the prompt expanded by the family processor's own counting rule (its
    methods on a stand-in: the processor needs torchvision to be built for video), pixels from
    the engine's processing (the folder's image processor; video frames as ours)."""

    def __init__(self, folder: str) -> None:
        import transformers
        from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor
        from transformers.models.llava_next_video.processing_llava_next_video import (
            LlavaNextVideoProcessor,
        )
        from transformers.models.llava_onevision.processing_llava_onevision import (
            LlavaOnevisionProcessor,
        )

        arch = transformers.AutoConfig.from_pretrained(folder).architectures[0]
        self.model = getattr(transformers, arch).from_pretrained(folder, dtype=torch.float32).eval()
        c = self.model.config
        self.onevision = arch.startswith("LlavaOnevision")
        side = c.vision_config.image_size // c.vision_config.patch_size
        cls = 0 if c.vision_config.model_type.startswith("siglip") else 1  # CLIP's class token
        rules = types.SimpleNamespace(
            num_image_tokens=side * side + cls, image_token="<image>", video_token="<video>",
            vision_aspect_ratio=getattr(c, "vision_aspect_ratio", None), patch_size=c.vision_config.patch_size,
            num_additional_image_tokens=cls, vision_feature_select_strategy=c.vision_feature_select_strategy,
            image_processor=types.SimpleNamespace(image_grid_pinpoints=c.image_grid_pinpoints))
        image_rules = LlavaOnevisionProcessor if self.onevision else LlavaNextProcessor
        for name in ("_get_unpadded_features", "_get_number_of_features"):
            setattr(rules, name, types.MethodType(getattr(image_rules, name), rules))
        self.image_rules = image_rules
        self.video_rules = LlavaOnevisionProcessor if self.onevision else LlavaNextVideoProcessor
        self.rules, self.c = rules, c

    def count(self, inputs: dict, images_in_prompt: int) -> int:
        if "pixel_values_videos" in inputs:
            return int(self.video_rules.replace_video_token(self.rules, inputs, 0).count("<video>"))
        if self.onevision:
            enc = {"image_sizes": inputs["image_sizes"], "pixel_values": inputs["pixel_values"],
                   "batch_num_images": [images_in_prompt]}
            return int(self.image_rules.replace_image_token(self.rules, enc, 0).count("<image>"))
        h, w = (int(v) for v in inputs["image_sizes"].reshape(-1))
        size = self.c.vision_config.image_size
        n = self.image_rules._get_number_of_features(self.rules, h, w, size, size)
        return n - (1 if self.c.vision_feature_select_strategy == "default" else 0)

    def inputs(self, engine: Engine, prompt: str, images: list, video: dict | None = None) -> dict:
        ids = engine.tokenizer(prompt)["input_ids"]
        _, mm = engine._media.expand(ids, images, [video] if video else [])
        items = iter(mm.items)
        out: list[int] = []
        for t in ids:
            if t in (self.c.image_token_id, self.c.video_token_id):
                out += [t] * self.count(next(items).inputs, len(images))
            else:
                out.append(t)
        imgs = [it for it in mm.items if it.modality == "image"]
        vids = [it for it in mm.items if it.modality == "video"]
        enc: dict = {"input_ids": torch.tensor([out])}
        if imgs:
            tiles = max(it.inputs["pixel_values"].shape[1] for it in imgs)
            enc["pixel_values"] = torch.cat([torch.nn.functional.pad(it.inputs["pixel_values"],
                                                                     (0, 0, 0, 0, 0, 0, 0, tiles - it.inputs["pixel_values"].shape[1]))
                                             for it in imgs])
            enc["image_sizes"] = torch.cat([it.inputs["image_sizes"] for it in imgs])
            if self.onevision:
                enc["batch_num_images"] = torch.tensor([len(imgs)])  # several: one tile each
        if vids:
            enc["pixel_values_videos"] = torch.cat([it.inputs["pixel_values_videos"] for it in vids])
        return enc

    @torch.inference_mode()
    def check(self, engine: Engine, result: dict, prompt: str, images: list, video: dict | None = None) -> None:
        enc = self.inputs(engine, prompt, images, video)
        ids = enc["input_ids"][0].tolist()
        logits = self.model(**enc).logits[0].float()
        expected = torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        assert result["meta_info"]["prompt_tokens"] == len(ids)
        ours = torch.tensor([row[0] for row in result["meta_info"]["input_token_logprobs"][1:]])
        text = torch.tensor([t not in (self.c.image_token_id, self.c.video_token_id) for t in ids[1:]])
        assert (ours[text] - expected[text]).abs().max() < 1e-4
        out = self.model.generate(**enc, max_new_tokens=16, min_new_tokens=16, do_sample=False)
        assert result["output_ids"] == out[0, len(ids):].tolist()


@pytest.fixture(scope="module")
def reference(folder):
    return Reference(folder)


@pytest.mark.parametrize("case", ["one", "two", "video"])
def test_parity_alone_and_chunked(engine, chunked, reference, video, case):
    prompt, images, vid = {"one": (ONE, IMAGES[:1], None), "two": (TWO, IMAGES[1:], None),
                           "video": (VID, [], video)}[case]
    for e in (engine, chunked):
        e.flush_cache()
        out = e.generate(prompt, GREEDY, image_data=images or None, video_data=vid, return_logprob=True,
                         logprob_start_len=0)
        reference.check(e, out, prompt, images, vid)
        e.check_kv()


def test_cached_prefix_covers_the_video(engine, reference, video):
    engine.flush_cache()
    first = engine.generate(VID, GREEDY, video_data=video, return_logprob=True, logprob_start_len=0)
    reference.check(engine, first, VID, [], video)
    again = engine.generate(VID, GREEDY, video_data=video)  # (prompt logprobs would recompute the prefix)
    assert again["meta_info"]["cached_tokens"] == again["meta_info"]["prompt_tokens"] - 1
    assert again["output_ids"] == first["output_ids"]


def test_token_counts_match_the_processor_rule(engine, reference):
    for size in [(40, 90), (64, 40), (33, 33), (200, 30), (16, 300), (90, 90)]:
        img = random_image(5, size)
        for prompt, n in ((ONE, 1), (TWO, 2)):
            _, mm = engine._media.expand(engine.tokenizer(prompt)["input_ids"], [img] * n, [])
            assert [it.length for it in mm.items] == [reference.count(it.inputs, n) for it in mm.items]


def test_onevision_with_a_siglip_tower(tmp_path, default_tokenizer_folder):
    """Real OneVision checkpoints use SigLIP ("full" strategy: every patch, no class token)."""
    folder = save_random_llava_onevision(str(tmp_path), default_tokenizer_folder, siglip=True)
    reference = Reference(folder)
    with Engine(folder, dtype="float32", chunked_prefill_size=8) as e:
        for prompt, images in ((ONE, IMAGES[:1]), (TWO, IMAGES[1:])):
            out = e.generate(prompt, GREEDY, image_data=images, return_logprob=True, logprob_start_len=0)
            reference.check(e, out, prompt, images)
        e.check_kv()
