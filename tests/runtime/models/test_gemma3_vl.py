"""Gemma 3 (SigLIP, 4 pooled tokens an image, bidirectional attention among an image's tokens)
and PaliGemma 2 (SigLIP, prefix-LM attention over image + prompt, a sliding-window layer)
against transformers on tiny random checkpoints saved with their real processors: prompt
logprobs (float32, 1e-4) and 16 greedy tokens with one and two images, alone, batched with
text, with chunks smaller than an image (the planner keeps a non-causal span in one chunk), and
behind a cached prefix (never ending inside a span)."""

from __future__ import annotations

import pytest
from mm_fixtures import LlavaReference, random_image
from sgl.runtime import Engine
from sgl.runtime.multimodal.items import MultimodalInputs
from sgl.runtime.multimodal.random_gemma import (
    GEMMA3_IMAGE,
    save_random_gemma3,
    save_random_paligemma,
)
from vlm_references import check, run

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
IMAGES = [random_image(1), random_image(2, (64, 40))]
# (transformers' prompt, ours). Gemma 3: a space after <start_of_image> keeps the tiny (GPT-2
# style) tokenizer's split of the "\n\n" the processor adds the same as ours. PaliGemma: the
# engine takes the prompt as PaliGemmaProcessor formats it (one <image> per image, then <bos>, "\n").
PROMPTS = {
    "gemma3": {1: (f"A photo:{GEMMA3_IMAGE} What is in it?",) * 2,
               2: (f"First{GEMMA3_IMAGE} then{GEMMA3_IMAGE} which is brighter?",) * 2},
    "paligemma": {1: ("<image>What is in it?", "<image><|im_start|>What is in it?\n"),
                  2: ("<image><image>Which is brighter?", "<image><image><|im_start|>Which is brighter?\n")},
}


@pytest.fixture(scope="module", params=["gemma3", "paligemma"])
def family(request):
    return request.param


@pytest.fixture(scope="module")
def folder(family, tmp_path_factory, default_tokenizer_folder):
    save = save_random_gemma3 if family == "gemma3" else save_random_paligemma
    return save(str(tmp_path_factory.mktemp(family)), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    return LlavaReference(folder)


@pytest.fixture(scope="module")
def tiny_chunks(folder):
    """Chunks of 3 tokens: smaller than a Gemma 3 image (4 tokens) or a PaliGemma prompt."""
    with Engine(folder, dtype="float32", chunked_prefill_size=3) as e:
        yield e


@pytest.mark.parametrize("count", [1, 2])
def test_parity_alone_and_in_chunks_smaller_than_an_image(family, engine, tiny_chunks, reference, count):
    hf, ours = PROMPTS[family][count]
    images = IMAGES[:count]
    for e in (engine, tiny_chunks):
        e.flush_cache()
        check(run(e, ours, images), reference, hf, images)
        e.check_kv()


def test_batched_with_text_and_cached(family, engine, reference):
    engine.flush_cache()
    (hf1, ours1), (hf2, ours2) = PROMPTS[family][1], PROMPTS[family][2]
    text = "Plain text, no pictures."
    out = engine.generate([ours1, text, ours2], GREEDY, image_data=[IMAGES[:1], None, IMAGES],
                          return_logprob=True, logprob_start_len=0)
    check(out[0], reference, hf1, IMAGES[:1])
    check(out[2], reference, hf2, IMAGES)
    if family == "gemma3":  # a text prompt to PaliGemma is causal here, prefix-LM in transformers
        assert out[1]["output_ids"] == reference.greedy(text, [])
    # the same prompt again: Gemma 3 reuses the images' KV; PaliGemma's whole prompt is one
    # non-causal span, so a cached prefix would end inside it: nothing is reused
    again = engine.generate(ours2, GREEDY, image_data=IMAGES)
    prompt = again["meta_info"]["prompt_tokens"]
    assert again["meta_info"]["cached_tokens"] == (prompt - 1 if family == "gemma3" else 0)
    assert again["output_ids"] == out[2]["output_ids"]
    engine.check_kv()


def test_cached_prefix_stops_at_an_image_it_would_cut(engine, reference, family):
    """Logprobs asked from inside the first image limit the cached prefix to there; the prefix
    then stops at the image's start (its tokens' KV is only right computed together)."""
    if family != "gemma3":
        pytest.skip("PaliGemma's span is the whole prompt (covered above)")
    hf, ours = PROMPTS[family][2]
    engine.flush_cache()
    run(engine, ours, IMAGES)
    ids = reference.inputs(hf, IMAGES)["input_ids"][0].tolist()
    first = ids.index(reference.image_token)
    out = run(engine, ours, IMAGES, start=first + 2)
    assert out["meta_info"]["cached_tokens"] == first
    check(out, reference, hf, IMAGES, start=first + 2)


def test_span_rules():
    mm = MultimodalInputs(noncausal=((5, 9), (12, 40)))
    assert [mm.prefix_cut(n) for n in (5, 7, 9, 11, 20)] == [5, 5, 9, 11, 12]
    assert mm.chunk_end(0, 7) == 5  # stops before a span it would cut
    assert mm.chunk_end(5, 8) == 9  # a span longer than the chunk is computed whole
    assert mm.chunk_end(9, 11) == 11
    assert mm.attend_spans(3, 7) == [(0, 0), (0, 0), (5, 9), (5, 9)]
    assert mm.attend_spans(9, 12) is None
