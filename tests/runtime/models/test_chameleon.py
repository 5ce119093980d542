"""Chameleon (VQ-GAN image tokens in the LM's vocabulary, per-head q/k LayerNorm) against
transformers on a tiny random checkpoint saved with its real ChameleonProcessor: prompt
logprobs (float32, 1e-4) and 16 greedy tokens with one and two images, alone, in chunks of 8
tokens (an image is 64), batched with text, behind a cached prefix; a repeated image reuses its
KV and runs no VQ encoder. The code tokens' logits are masked as transformers masks them (the
prompt logprobs differ otherwise)."""

from __future__ import annotations

import pytest
from mm_fixtures import png_bytes, random_image
from sgl.runtime import Engine
from sgl.runtime.multimodal.random_chameleon import CHAMELEON_TOKENS, save_random_chameleon
from vlm_references import GREEDY, ChameleonReference, check, run

IMAGES = [random_image(1), random_image(2, (64, 40))]
PROMPTS = {1: "A photo:<image> What is in it?", 2: "First<image> then<image> which is brighter?"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_random_chameleon(str(tmp_path_factory.mktemp("chameleon")), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    return ChameleonReference(folder)


@pytest.fixture(scope="module")
def chunked(folder):
    with Engine(folder, dtype="float32", chunked_prefill_size=8) as e:
        yield e


@pytest.mark.parametrize("count", [1, 2])
def test_parity_alone_and_chunked(engine, chunked, reference, count):
    images = IMAGES[:count]
    for e in (engine, chunked):
        e.flush_cache()
        out = run(e, PROMPTS[count], images)
        assert out["meta_info"]["prompt_tokens"] > count * CHAMELEON_TOKENS
        check(out, reference, PROMPTS[count], images)
        e.check_kv()


def test_batched_with_text_behind_a_cached_prefix_and_repeated(engine, reference):
    one, two = PROMPTS[1], PROMPTS[2]
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([one, text, two], GREEDY, image_data=[IMAGES[:1], None, IMAGES],
                          return_logprob=True, logprob_start_len=0)
    check(out[0], reference, one, IMAGES[:1])
    check(out[2], reference, two, IMAGES)
    assert out[1]["output_ids"] == reference.greedy(text, [])
    longer = two + " Answer in one word."
    start = len(reference.inputs(two, IMAGES)["input_ids"][0]) - 1
    again = run(engine, longer, IMAGES, start)
    assert again["meta_info"]["cached_tokens"] >= start > 2 * CHAMELEON_TOKENS
    check(again, reference, longer, IMAGES, start)
    # the same pixels (as PNG bytes) reuse the image's KV and run no encoder; other pixels do
    runs = engine.get_server_info()["vision_encoder_runs"]
    same = engine.generate(one, GREEDY, image_data=png_bytes(IMAGES[0]))
    other = engine.generate(one, GREEDY, image_data=random_image(5))
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"] != other["output_ids"]
    first = reference.inputs(one, [random_image(5)])["input_ids"][0].tolist().index(reference.image_token)
    assert other["meta_info"]["cached_tokens"] == first  # "A photo:" and <racm3:break> are shared text
    assert engine.get_server_info()["vision_encoder_runs"] == runs + 1
    engine.check_kv()

