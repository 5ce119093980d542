"""LLaVA 1.5 and LLaVA-NeXT (anyres tiles, unpad, image_newline) against transformers on tiny
random checkpoints saved with their real image processors (CLIP's; LLaVA-NeXT's, 32 px tiles): prompt logprobs (float32, 1e-4) and 16 greedy tokens with one and two images, alone,
batched with text, behind a cached prefix and through chunks smaller than an image; the radix
cache keys images by content; bad media is refused and leaks nothing."""

from __future__ import annotations

import pytest
import torch
from mm_fixtures import LlavaReference, png_bytes, png_header, random_image, save_tiny_llava
from sgl.runtime import Engine
from sgl.runtime.multimodal.random_checkpoints import save_random_llava_next

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
ONE = "A photo: <image> What is in it?"
TWO = "First <image> then <image>: which is brighter?"


@pytest.fixture(scope="module", params=["1.5", "next"])
def folder(request, tmp_path_factory, default_tokenizer_folder):
    save = save_tiny_llava if request.param == "1.5" else save_random_llava_next
    return save(str(tmp_path_factory.mktemp("llava")), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    return LlavaReference(folder)


IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (33, 33))]


def check(result: dict, reference: LlavaReference, prompt: str, images: list, start: int = 0) -> None:
    """Prompt logprobs from position `start` on (the request's logprob_start_len) and greedy tokens."""
    ids, expected = reference.prompt_logprobs(prompt, images)
    meta = result["meta_info"]
    assert meta["prompt_tokens"] == len(ids)
    ours = torch.tensor([row[0] for row in meta["input_token_logprobs"][1:]])
    assert len(ours) == len(ids) - 1 - start
    expected = expected[start:]
    text = torch.tensor([t != reference.image_token for t in ids[start + 1:]])  # targets that are text tokens
    assert (ours[text] - expected[text]).abs().max() < 1e-4
    assert result["output_ids"] == reference.greedy(prompt, images)


def run(engine: Engine, prompt, images, start: int = 0):
    return engine.generate(prompt, GREEDY, image_data=images, return_logprob=True, logprob_start_len=start)


@pytest.mark.parametrize("prompt,images", [(ONE, IMAGES[:1]), (TWO, IMAGES[1:])])
def test_parity_alone_and_chunked(engine, chunked, reference, prompt, images):
    for e in (engine, chunked):
        e.flush_cache()
        check(run(e, prompt, images), reference, prompt, images)
        e.check_kv()


def test_batched_with_text_and_behind_a_cached_prefix(engine, reference):
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([ONE, text, TWO], GREEDY, image_data=[IMAGES[0], None, IMAGES[1:]],
                          return_logprob=True, logprob_start_len=0)
    check(out[0], reference, ONE, IMAGES[:1])
    check(out[2], reference, TWO, IMAGES[1:])
    ids = reference.inputs(text, [])["input_ids"][0].tolist()
    assert out[1]["output_ids"] == reference.greedy(text, [])
    assert out[1]["meta_info"]["prompt_tokens"] == len(ids)
    # a longer prompt that starts with TWO: both images come from the radix cache (prompt
    # logprobs only after them: rows before a logprob start would need the prefix computed)
    longer = TWO + " Answer in one word."
    start = len(reference.inputs(TWO, IMAGES[1:])["input_ids"][0]) - 1
    again = run(engine, longer, IMAGES[1:], start)
    assert again["meta_info"]["cached_tokens"] >= start > 32  # both images' tokens
    check(again, reference, longer, IMAGES[1:], start)
    engine.check_kv()


def test_cache_keys_images_by_content(engine, reference):
    engine.flush_cache()
    runs = engine.get_server_info()["vision_encoder_runs"]
    first = engine.generate(ONE, GREEDY, image_data=IMAGES[0])
    prefix = len(reference.inputs("A photo: ", [])["input_ids"][0])  # the text before the image
    same = engine.generate(ONE, GREEDY, image_data=png_bytes(IMAGES[0]))  # the same pixels, as PNG bytes
    other = engine.generate(ONE, GREEDY, image_data=IMAGES[2])
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1  # covers the image
    assert same["output_ids"] == first["output_ids"]
    assert other["meta_info"]["cached_tokens"] == prefix  # only the text before the image
    assert other["output_ids"] == reference.greedy(ONE, IMAGES[2:])
    # encoder runs: the first image once, its repeat none (cached KV), the other image once
    assert engine.get_server_info()["vision_encoder_runs"] == runs + 2
    engine.check_kv()


def test_processor_counts_and_positions_match_transformers(engine, reference):
    for img in [*IMAGES, random_image(9, (200, 30)), random_image(8, (16, 300))]:
        ids = reference.inputs(TWO, [img, img])["input_ids"][0].tolist()
        expanded, mm = engine._media.expand(engine.tokenizer(TWO)["input_ids"], [img, img], [])
        assert len(expanded) == len(ids)
        positions = [i for i, t in enumerate(ids) if t == reference.image_token]
        assert [p for it in mm.items for p in range(it.offset, it.end)] == positions


def test_bad_media_is_refused_naming_the_field(engine):
    bad = {
        "placeholder": (ONE, [IMAGES[0], IMAGES[1]], "image_data: the prompt has 1 image placeholder"),
        "truncated": (ONE, png_bytes(IMAGES[0])[:60], "image_data: "),
        "bomb": (ONE, png_header(40000, 40000), "more than"),
        "base64": (ONE, "not base64 !!", "not a file that exists"),
        "url": (ONE, "http://example.com/a.png", "--allow-url-media"),
        "second": (TWO, [IMAGES[0], b"junk"], r"image_data\[1\]"),
        "video": (ONE, None, "video_data: Llava(Next)?ForConditionalGeneration does not take videos"),
    }
    for name, (prompt, images, message) in bad.items():
        kw = {"video_data": "clip.mp4", "image_data": IMAGES[0]} if name == "video" else {"image_data": images}
        with pytest.raises(ValueError, match=message):
            engine.generate(prompt, GREEDY, **kw)
    engine.check_kv()
    assert engine.generate(ONE, GREEDY, image_data=IMAGES[0])["meta_info"]["completion_tokens"] == 16


def test_server_info_reports_modalities(engine):
    info = engine.get_server_info()
    assert info["supports_image"] is True and info["supports_video"] is False


def test_bf16_decode_runs_the_language_model_in_the_fused_stack(folder, vector_kernels):
    """LLaVA hands its forward to its Llama: in bf16 the runner runs those layers in the C stack
    (layers/fused_decoder.py), with the image rows as input embeddings, and agrees with the
    module path."""
    with Engine(folder, dtype="bfloat16", max_total_tokens=2048) as e:
        runner = e._scheduler.runner
        stack, rows = runner.fused, []
        assert stack is not None

        class Counting:
            accepts = stack.accepts

            def __call__(self, x, batch):
                rows.append(x.shape[0])
                return stack(x, batch)

        outputs = []
        for fused in (Counting(), None):
            runner.fused = fused
            e.flush_cache()
            out = e.generate(ONE, {**GREEDY, "max_new_tokens": 4}, image_data=IMAGES[0], return_logprob=True,
                             logprob_start_len=0)
            outputs.append(out["meta_info"])
        runner.fused = stack
        assert rows.count(1) >= 3  # the decode steps went through the stack
        fused, modules = ([row[0] for row in m["input_token_logprobs"][1:]] for m in outputs)
        assert max(abs(a - b) for a, b in zip(fused, modules)) < 0.15  # bf16: kernels round differently
        assert [t for _, t, _ in outputs[0]["output_token_logprobs"]][:2] == \
            [t for _, t, _ in outputs[1]["output_token_logprobs"]][:2]
