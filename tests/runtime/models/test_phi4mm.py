"""Phi-4-multimodal against transformers on a tiny random checkpoint (float32: prompt logprobs
within 1e-4, 16 identical greedy tokens): one and two images (HD crops with padded patches, a
grid of the closest aspect ratio), one and two audio clips, an image and a clip in one prompt
(the vision-speech projector); alone, in 8-token chunks (smaller than any image or clip),
batched with text, behind a cached prefix; a repeated image or clip reuses its KV and runs no
encoder. The image layout (crops, patch masks, token counts) equals transformers' own
Phi4MultimodalImageProcessor rule, run with torch stand-ins for its two torchvision calls."""

from __future__ import annotations

import base64
import importlib
import sys
import types
from pathlib import Path

import pytest
import torch
from sgl.runtime.multimodal.audio import load_audio
from sgl.runtime.multimodal.random_phi4mm import save_random_phi4mm

sys.path.insert(0, str(Path(__file__).parent.parent))
from audio_fixtures import Phi4MMReference, tone, write_audio  # noqa: E402
from mm_fixtures import png_bytes, random_image  # noqa: E402
from vlm_references import (  # noqa: E402
    GREEDY,
    check,
    check_alone_and_chunked,
    check_batched_cached_repeated,
    run,
)

ONE, TWO = "Look: <|image|> What is it?", "First <|image|> then <|image|>: which is brighter?"
AONE, ATWO = "Listen: <|audio|> What is it?", "First <|audio|> then <|audio|>: the same?"
MIXED = "See <|image|> and hear <|audio|>: do they match?"
RATE = 16000


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_random_phi4mm(str(tmp_path_factory.mktemp("phi4mm")), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    return Phi4MMReference(folder)


@pytest.fixture(scope="module")
def images():
    """2x2 crops with padded patch rows; 2x3 crops past the 4 allowed (the 1x2 grid of the
    closest aspect ratio); one crop with a padded patch row."""
    return [random_image(1), random_image(2, (70, 30)), random_image(3, (20, 26))]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """(paths, samples): two 0.8 s WAVs (equal length: a prompt's clips) and a 0.6 s stereo FLAC at 22.05 kHz."""
    d = tmp_path_factory.mktemp("audio")
    paths = [write_audio(str(d / "a.wav"), tone(1, 0.8)), write_audio(str(d / "b.wav"), tone(2, 0.8)),
             write_audio(str(d / "c.flac"), tone(3, 0.6, 22050, 2), 22050)]
    return paths, [load_audio(p, RATE, 30 * RATE) for p in paths]


def test_image_parity_alone_and_chunked(engine, chunked, reference, images):
    check_alone_and_chunked((engine, chunked), reference, (ONE, TWO), (images[:1], images[1:]))


def test_image_batched_cached_repeated(engine, reference, images):
    check_batched_cached_repeated(engine, reference, (ONE, TWO), images, 20)


@pytest.mark.parametrize("case", ["one", "two", "mixed"])
def test_audio_and_mixed_alone_and_chunked(engine, chunked, reference, images, clips, case):
    paths, samples = clips
    prompt, imgs, pick = {"one": (AONE, [], [2]), "two": (ATWO, [], [0, 1]), "mixed": (MIXED, images[:1], [0])}[case]
    for e in (engine, chunked):
        e.flush_cache()
        check(run(e, prompt, imgs, 0, [paths[i] for i in pick]), reference, prompt, imgs, 0, [samples[i] for i in pick])
        e.check_kv()


def test_audio_batched_cached_repeated(engine, reference, images, clips):
    """A clip alone and with an image, batched with text; the clip again (base64) reuses its KV
    and runs no encoder; with an image the same clip is encoded again (its other projector)."""
    paths, samples = clips
    engine.flush_cache()
    text = "Plain text, no sound at all here."
    out = engine.generate([AONE, text, MIXED], GREEDY, audio_data=[paths[:1], None, paths[:1]],
                          image_data=[None, None, images[:1]], return_logprob=True, logprob_start_len=0)
    check(out[0], reference, AONE, [], 0, samples[:1])
    check(out[2], reference, MIXED, images[:1], 0, samples[:1])
    assert out[1]["output_ids"] == reference.greedy(text, [])
    assert engine.get_server_info()["vision_encoder_runs"] >= 3  # the speech clip, the vision-speech clip, the image
    runs = engine.get_server_info()["vision_encoder_runs"]
    longer = AONE + " Answer in one word."
    start = len(reference.inputs(AONE, [], samples[:1])["input_ids"][0]) - 1
    again = run(engine, longer, None, start, [base64.b64encode(Path(paths[0]).read_bytes()).decode()])
    assert again["meta_info"]["cached_tokens"] >= start > 10
    check(again, reference, longer, [], start, samples[:1])
    same = engine.generate(MIXED, GREEDY, image_data=png_bytes(images[0]), audio_data=paths[0])
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[2]["output_ids"]
    assert engine.get_server_info()["vision_encoder_runs"] == runs
    engine.check_kv()


def transformers_image_rule():
    """transformers' Phi4MultimodalImageProcessor with torch stand-ins for torchvision's resize
    (antialiased bilinear) and pad: its own crop, mask and token-count code runs."""
    from torch.nn import functional as F

    def resize(img, size, **_):
        return F.interpolate(img[None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0]

    def pad(img, padding, fill):
        out = torch.full((3, img.shape[1] + padding[3], img.shape[2] + padding[2]), fill[0], dtype=img.dtype)
        out[:, : img.shape[1], : img.shape[2]] = img
        return out

    fn = types.SimpleNamespace(resize=resize, pad=pad)
    saved = {k: sys.modules.get(k) for k in ("torchvision.transforms.v2", "torchvision.transforms.v2.functional")}
    sys.modules.update({"torchvision.transforms.v2": types.SimpleNamespace(functional=fn),
                        "torchvision.transforms.v2.functional": fn})
    try:
        # the module itself (the package's lazy attribute checks for torchvision first)
        m = importlib.import_module("transformers.models.phi4_multimodal.image_processing_phi4_multimodal")
    finally:
        for k, v in saved.items():
            sys.modules.pop(k) if v is None else sys.modules.__setitem__(k, v)
    m.tvF = fn
    proc = object.__new__(m.Phi4MultimodalImageProcessor)  # its __init__ asks for torchvision
    proc.rescale_and_normalize = lambda x, _r, rf, _n, mean, std: (x.float() * rf - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    proc.resize = lambda x, size, resample, antialias: F.interpolate(
        x[None], size=(size.height, size.width), mode="bicubic", align_corners=False, antialias=antialias)[0]
    return m, proc


@pytest.mark.parametrize("crop,patch,max_crops", [(448, 14, 36), (448, 14, 4), (28, 7, 4)])
def test_image_layout_equals_transformers_rule(crop, patch, max_crops):
    import numpy as np
    from sgl.runtime.models.phi4mm import pooled_side, real_grid
    from sgl.runtime.multimodal.phi4mm_images import Phi4MMImageProcessor
    from transformers.image_utils import SizeDict

    m, proc = transformers_image_rule()
    ours = Phi4MMImageProcessor({"size": {"height": crop, "width": crop}, "patch_size": patch, "dynamic_hd": max_crops})
    scale = crop / 448
    for w, h in [(500, 300), (900, 460), (100, 460), (448, 448), (1300, 250), (640, 1500)]:
        img = random_image(w + h, (max(int(h * scale), 12), max(int(w * scale), 12)))
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        ref = m.Phi4MultimodalImageProcessor._preprocess(
            proc, [x], do_resize=True, size=SizeDict(height=crop, width=crop), resample=None, do_rescale=True,
            rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3, patch_size=patch,
            dynamic_hd=max_crops, return_tensors="pt")
        got = ours(img)
        assert torch.equal(got["pixel_values"], ref["image_pixel_values"][0])
        assert torch.equal(got["patch_mask"], ref["image_attention_mask"][0].bool())
        assert (got["grid"] * crop).tolist() == ref["image_sizes"][0].tolist()
        uh, uw = real_grid(got["patch_mask"], got["grid"])
        if crop == 448:  # transformers' count hard-codes 448 px crops of 14 px patches (256 + 16 global tokens)
            mm = types.SimpleNamespace(tower=types.SimpleNamespace(image_size=crop, patch_size=patch))
            b = pooled_side(mm)
            assert uh * (uw + 1) + 1 + b * (b + 1) == ref["num_img_tokens"][0]


@torch.inference_mode()
def test_long_clip_encodes_in_chunks_as_transformers(engine, reference):
    """A clip of more than 500 subsampled frames (4100 mel frames: 513) is encoded in chunks of
    500, the last padded, as transformers' encoder does."""
    torch.manual_seed(0)
    features = torch.randn(4100, reference.mm.conformer.input_size)
    ours = engine._scheduler.runner.model.audio_embed.encoder(features)
    theirs = reference.model.model.embed_tokens_extend.audio_embed.encoder(features[None], None)[0]
    assert ours.shape == theirs.shape == (513, reference.mm.conformer.hidden_size)
    assert (ours - theirs).abs().max() < 1e-4


def test_openai_image_and_audio_parts(engine, reference, images, clips):
    """An OpenAI message with an image_url and an input_audio part becomes the model's
    <|image|> and <|audio|> and the request's media; the answer equals transformers'."""
    from sgl.runtime.server.openai_media import ChatMedia, message_text
    from sgl.runtime.server.openai_protocol import ChatMessage

    paths, samples = clips
    png = "data:image/png;base64," + base64.b64encode(png_bytes(images[0])).decode()
    wav = base64.b64encode(Path(paths[0]).read_bytes()).decode()
    m = ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": png}},
                                          {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
                                          {"type": "text", "text": "Do they match?"}])
    media = ChatMedia()
    prompt = message_text(m, 0, engine, media)
    assert prompt == "<|image|>\n<|audio|>\nDo they match?" and media.images == [png] and media.audios == [wav]
    info = engine.get_server_info()
    assert info["supports_image"] and info["supports_audio"] and not info["supports_video"]
    out = engine.generate(prompt, GREEDY, image_data=media.images, audio_data=media.audios)
    assert out["output_ids"] == reference.greedy(prompt, images[:1], samples[:1])


def test_bad_media_is_refused_naming_the_field(engine, clips):
    with pytest.raises(ValueError, match="image_data: a 12x400 image's aspect ratio is too extreme"):
        engine.generate(ONE, GREEDY, image_data=random_image(9, (400, 12)))
    with pytest.raises(ValueError, match="video_data: Phi4MultimodalForCausalLM does not take videos"):
        engine.generate("No media here.", GREEDY, video_data=clips[0][0])
    with pytest.raises(ValueError, match=r"audio_data\[1\]: not audio"):
        engine.generate(ATWO, GREEDY, audio_data=[clips[0][0], b"junk" * 8])
    assert engine.generate(AONE, GREEDY, audio_data=clips[0][0])["meta_info"]["completion_tokens"] == 16
