"""Aria against transformers on a tiny random checkpoint saved with AriaProcessor and its PIL
image processor (980 px crops padded from the image's longest edge, a pixel mask; 70 px
patches, 12 projector queries a crop) and a two-layer MoE text model (4 experts, top 2, 2
shared): prompt logprobs (float32, 1e-4) and 16 greedy tokens with one image and two of other
shapes (padded rows, a partly real column of patches), alone, through chunks smaller than an
image, batched with text and behind a cached prefix; a repeated image reuses its cached KV and
runs no encoder."""

from __future__ import annotations

import pytest
from mm_fixtures import LlavaReference, random_image
from sgl.runtime.multimodal.random_idefics import ARIA_IMAGE, save_random_aria
from vlm_references import check, check_batched_cached_repeated, run

IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (20, 70))]
ONE = f"A photo: {ARIA_IMAGE} What is in it?"
TWO = f"First {ARIA_IMAGE} then {ARIA_IMAGE}: which is brighter?"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_random_aria(str(tmp_path_factory.mktemp("aria")), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    return LlavaReference(folder)  # AriaProcessor and AriaForConditionalGeneration


def test_parity_alone_and_chunked(engine, chunked, reference):
    for prompt, images in ((ONE, IMAGES[:1]), (TWO, IMAGES[1:])):
        for e in (engine, chunked):
            e.flush_cache()
            check(run(e, prompt, images), reference, prompt, images)
            e.check_kv()


def test_batched_with_text_behind_a_cached_prefix_and_repeated(engine, reference):
    check_batched_cached_repeated(engine, reference, (ONE, TWO), IMAGES, min_prefix=16)
