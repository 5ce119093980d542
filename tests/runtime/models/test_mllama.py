"""Mllama (Llama 3.2 Vision: cross-attention layers) against transformers on a tiny random
checkpoint saved with its real MllamaProcessor: prompt logprobs (float32, 1e-4) and 16 greedy
tokens with one image and two (apart, and consecutive), alone, in 3-token chunks, batched with
text, behind a cached prefix; an image's cross-attention KV is computed once per image hash
(the engine's cross_kv_runs counter) whichever requests or fork children show it."""

from __future__ import annotations

import pytest
import sgl
from mm_fixtures import png_bytes, random_image
from sgl.runtime import Engine
from sgl.runtime.multimodal.items import MediaItem, MultimodalInputs
from sgl.runtime.multimodal.random_mllama import save_random_mllama
from vlm_references import GREEDY, MllamaReference, check, run

IMAGES = [random_image(1), random_image(2, (48, 48))]  # 2 tiles ([1, 2]), then 1 tile
# (transformers' prompt, ours): MllamaProcessor puts the bos (<|im_start|> in the tiny
# tokenizer) after leading <|image|> tokens; the engine takes the prompt as it formats it
PROMPTS = {1: ("<|image|>What is in it?", "<|image|><|im_start|>What is in it?"),
           2: ("<|image|>First, then<|image|> which is brighter?",
               "<|image|><|im_start|>First, then<|image|> which is brighter?"),
           "consecutive": ("<|image|><|image|>Which is brighter?", "<|image|><|image|><|im_start|>Which is brighter?")}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_random_mllama(str(tmp_path_factory.mktemp("mllama")), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    return MllamaReference(folder)


@pytest.fixture(scope="module")
def tiny_chunks(folder):
    """3-token chunks, and no cache budget (a running request still keeps its images' KV)."""
    with Engine(folder, dtype="float32", chunked_prefill_size=3, encoder_cache_mb=0) as e:
        yield e


@pytest.mark.parametrize("layout", [1, 2, "consecutive"])
def test_parity_alone_and_in_chunks(engine, tiny_chunks, reference, layout):
    hf, ours = PROMPTS[layout]
    images = IMAGES[:1] if layout == 1 else IMAGES
    for e in (engine, tiny_chunks):
        e.flush_cache()
        check(run(e, ours, images), reference, hf, images)
        e.check_kv()


def test_batched_with_text_and_cached(engine, reference):
    engine.flush_cache()
    (hf1, ours1), (hf2, ours2) = PROMPTS[1], PROMPTS[2]
    text = "Plain text, no pictures."  # MllamaProcessor puts the bos before text without images
    out = engine.generate([ours1, "<|im_start|>" + text, ours2], GREEDY, image_data=[IMAGES[:1], None, IMAGES],
                          return_logprob=True, logprob_start_len=0)
    check(out[0], reference, hf1, IMAGES[:1])
    check(out[2], reference, hf2, IMAGES)
    assert out[1]["output_ids"] == reference.greedy(text, [])
    # the same images behind a cached prefix: all but the last token, then one that stops
    # between the two images (logprobs asked from there)
    again = engine.generate(ours2, GREEDY, image_data=IMAGES)
    assert again["meta_info"]["cached_tokens"] == again["meta_info"]["prompt_tokens"] - 1
    assert again["output_ids"] == out[2]["output_ids"]
    part = run(engine, ours2, IMAGES, start=3)
    assert part["meta_info"]["cached_tokens"] == 3
    check(part, reference, hf2, IMAGES, start=3)
    engine.check_kv()


def test_kv_pool_holds_only_self_attention_layers(engine):
    # 2 self-attention layers x (k, v) x 2 kv heads x head dim 16 x float32; the cross layer has none
    assert engine.get_server_info()["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4


def test_same_image_cross_kv_computed_once(engine, reference):
    """Two requests about the same image (different questions, one batch or one after the
    other) compute its cross-attention keys and values once; another image is computed anew."""
    engine.flush_cache()
    runs = engine.get_server_info()["cross_kv_runs"]
    questions = ["<|image|>What is in it?", "<|image|>Describe the colours."]
    out = engine.generate([q.replace("<|image|>", "<|image|><|im_start|>") for q in questions], GREEDY,
                          image_data=[IMAGES[:1], IMAGES[:1]], return_logprob=True, logprob_start_len=0)
    assert engine.get_server_info()["cross_kv_runs"] == runs + 1
    for q, o in zip(questions, out):
        check(o, reference, q, IMAGES[:1])
    later = run(engine, "<|image|><|im_start|>Is it dark?", IMAGES[:1])
    check(later, reference, "<|image|>Is it dark?", IMAGES[:1])
    assert engine.get_server_info()["cross_kv_runs"] == runs + 1
    run(engine, "<|image|><|im_start|>Is it dark?", IMAGES[1:])
    assert engine.get_server_info()["cross_kv_runs"] == runs + 2


def test_a_running_request_keeps_its_images_kv(tiny_chunks, reference):
    """With no cache budget at all, a request still computes its images' KV once (its items
    hold it), not at every chunk and decode step."""
    hf, ours = PROMPTS[2]
    runs = tiny_chunks.get_server_info()["cross_kv_runs"]
    check(run(tiny_chunks, ours, IMAGES), reference, hf, IMAGES)
    assert tiny_chunks.get_server_info()["cross_kv_runs"] == runs + 2


@sgl.function
def two_views(s, image, cached: list):
    s += sgl.user(sgl.image(image) + "Describe it.")
    forks = s.fork(2)
    for i, f in enumerate(forks):
        f += sgl.assistant("View " + str(i) + ":" + sgl.gen("view", max_tokens=4))
    cached += [f.get_meta_info("view")["cached_tokens"] for f in forks]


def test_fork_children_share_the_images_cross_kv(folder, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(IMAGES[0]))
    rt = sgl.Runtime(model_path=folder, dtype="float32")
    try:
        assert rt.chat_template.image_token == "<|image|>"
        runs = rt.engine.get_server_info()["cross_kv_runs"]
        cached: list = []
        two_views.run(image=str(image), cached=cached, backend=rt, temperature=0)
        assert rt.engine.get_server_info()["cross_kv_runs"] == runs + 1  # one image, its KV computed once
        assert len(cached) == 2 and all(c > 0 for c in cached)  # the children reuse the prompt with the image
    finally:
        rt.shutdown()


def test_text_before_the_first_image_sees_no_image(engine, reference):
    """Tokens before the first <|image|> attend to no image: their logprobs are the text-only
    ones (transformers lets them attend to every tile unmasked: see layers/cross_attention.py)."""
    engine.flush_cache()
    text = "<|im_start|>Look at this:"
    out = run(engine, text + "<|image|> what is it?", IMAGES[:1])
    ids, expected = reference.prompt_logprobs(text, [])
    ours = [row[0] for row in out["meta_info"]["input_token_logprobs"][1 : len(ids)]]
    assert max(abs(a - b) for a, b in zip(ours, expected.tolist())) < 1e-4


def test_cross_groups_follow_transformers_mask():
    """MultimodalInputs.cross_groups equals MllamaProcessor's cross-attention token mask."""
    from transformers.models.mllama.processing_mllama import get_cross_attention_token_mask

    for ids in ([9, 1, 5, 5], [1, 9, 5, 9, 5, 5], [9, 9, 1, 5], [1, 5, 9, 9, 5, 9, 5], [9, 5, 9, 9, 5]):
        items = [MediaItem("image", {}, i, pos, 1) for i, pos in enumerate(p for p, t in enumerate(ids) if t == 9)]
        groups = MultimodalInputs(items, cross=True).cross_groups(0, len(ids) + 2)
        expected = [[0] * len(items) for _ in range(len(ids))]
        for k, (lo, hi) in enumerate(get_cross_attention_token_mask(ids, 9)):
            for t in range(lo, len(ids) if hi == -1 else hi):
                expected[t][k] = 1
        ours = [[int(a <= k < b) for k in range(len(items))] for a, b in groups]
        assert ours[: len(ids)] == expected
        assert ours[len(ids) :] == [expected[-1]] * 2  # generated tokens repeat the last row
