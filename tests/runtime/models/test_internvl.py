"""InternVL against transformers on a tiny random checkpoint saved with GotOcr2's PIL image
processor (32 px tiles, 1..4 tiles and a thumbnail): prompt logprobs (float32, 1e-4) and 16
greedy tokens with one and two images, alone, through chunks smaller than an image, batched
with text and behind a cached prefix; a repeated image reuses its cached KV; tile and token
counts equal transformers' for several sizes. (Video: transformers' InternVL config has no
video token id; not served.)"""

from __future__ import annotations

import pytest
import torch
from mm_fixtures import png_bytes, random_image
from sgl.runtime.multimodal.random_intern import INTERN_IMAGE, save_random_internvl
from vlm_references import InternVLReference

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
ONE = f"A photo: {INTERN_IMAGE} What is in it?"
TWO = f"First {INTERN_IMAGE} then {INTERN_IMAGE}: which is brighter?"
IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (33, 33))]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_random_internvl(str(tmp_path_factory.mktemp("internvl")), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    return InternVLReference(folder)


def check(result: dict, reference, prompt: str, images: list, start: int = 0) -> None:
    """Prompt logprobs of text targets from `start` on (media rows hold hashed ids) and greedy tokens."""
    ids, expected = reference.prompt_logprobs(prompt, images)
    meta = result["meta_info"]
    assert meta["prompt_tokens"] == len(ids)
    ours = torch.tensor([row[0] for row in meta["input_token_logprobs"][1:]])
    assert len(ours) == len(ids) - 1 - start
    text = torch.tensor([t != reference.image_token for t in ids[start + 1:]])
    assert (ours[text] - expected[start:][text]).abs().max() < 1e-4
    assert result["output_ids"] == reference.greedy(prompt, images)


def run(engine, prompt, images, start: int = 0):
    return engine.generate(prompt, GREEDY, image_data=images, return_logprob=True, logprob_start_len=start)


@pytest.mark.parametrize("prompt,images", [(ONE, IMAGES[:1]), (TWO, IMAGES[1:])])
def test_parity_alone_and_chunked(engine, chunked, reference, prompt, images):
    for e in (engine, chunked):
        e.flush_cache()
        check(run(e, prompt, images), reference, prompt, images)
        e.check_kv()


def test_batched_with_text_behind_a_cached_prefix_and_repeated(engine, reference):
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([ONE, text, TWO], GREEDY, image_data=[IMAGES[0], None, IMAGES[1:]],
                          return_logprob=True, logprob_start_len=0)
    check(out[0], reference, ONE, IMAGES[:1])
    check(out[2], reference, TWO, IMAGES[1:])
    assert out[1]["output_ids"] == reference.greedy(text, [])
    longer = TWO + " Answer in one word."
    start = len(reference.inputs(TWO, IMAGES[1:])["input_ids"][0]) - 1
    again = run(engine, longer, IMAGES[1:], start)
    assert again["meta_info"]["cached_tokens"] >= start > 32
    check(again, reference, longer, IMAGES[1:], start)
    # the same pixels (as PNG bytes) reuse the image's KV and run no encoder; other pixels do
    runs = engine.get_server_info()["vision_encoder_runs"]
    same = engine.generate(ONE, GREEDY, image_data=png_bytes(IMAGES[0]))
    other = engine.generate(ONE, GREEDY, image_data=random_image(5))
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"] != other["output_ids"]
    prefix = len(reference.tokenizer("A photo: ")["input_ids"]) + 1  # the text and <img>
    assert other["meta_info"]["cached_tokens"] == prefix
    assert engine.get_server_info()["vision_encoder_runs"] == runs + 1
    engine.check_kv()


def test_tile_counts_match_transformers(engine, reference):
    for size in [(40, 56), (64, 40), (33, 33), (200, 30), (16, 300), (90, 90)]:
        img = random_image(7, size)
        ids = reference.inputs(TWO, [img, img])["input_ids"][0].tolist()
        expanded, mm = engine._media.expand(engine.tokenizer(TWO)["input_ids"], [img, img], [])
        assert len(expanded) == len(ids)
        assert [expanded[it.offset] for it in mm.items] == [reference.wrap[0]] * 2
        assert [p for it in mm.items for p in range(it.offset + 1, it.end - 1)] == \
            [i for i, t in enumerate(ids) if t == reference.image_token]
