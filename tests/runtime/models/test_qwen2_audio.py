"""Qwen2-Audio and audio input against transformers on a tiny random checkpoint saved with a
small WhisperFeatureExtractor: prompt logprobs (float32, 1e-4) and 16 greedy tokens with one
clip and two clips (real WAV / FLAC / MP3 files decoded with PyAV and resampled), alone,
through chunks smaller than a clip, batched with text, behind a cached prefix; a repeated clip
reuses its KV; bad audio is a ValueError naming the field."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
import torch
from sgl.runtime.multimodal.audio import load_audio
from sgl.runtime.multimodal.random_audio import AUDIO, save_random_qwen2_audio

sys.path.insert(0, str(Path(__file__).parent.parent))
from audio_fixtures import Qwen2AudioReference, tone, write_audio  # noqa: E402

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
ONE = f"Listen: {AUDIO} What is it?"
TWO = f"First {AUDIO} then {AUDIO}: which is louder?"
RATE = 16000


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_random_qwen2_audio(str(tmp_path_factory.mktemp("qwen2audio")), default_tokenizer_folder)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Files of three formats and rates (stereo, 22.05 kHz FLAC; 44.1 kHz MP3), 0.3-0.9 s."""
    d = tmp_path_factory.mktemp("audio")
    return [write_audio(str(d / "a.wav"), tone(1, 0.6)), write_audio(str(d / "b.flac"), tone(2, 0.9, 22050, 2), 22050),
            write_audio(str(d / "c.mp3"), tone(3, 0.5, 44100), 44100)]


@pytest.fixture(scope="module")
def reference(folder):
    return Qwen2AudioReference(folder)


def samples(paths: list) -> list:
    return [load_audio(p, RATE, RATE) for p in paths]


def check(result: dict, reference: Qwen2AudioReference, prompt: str, paths: list, start: int = 0) -> None:
    ids, expected = reference.prompt_logprobs(prompt, samples(paths))
    meta = result["meta_info"]
    assert meta["prompt_tokens"] == len(ids)
    ours = torch.tensor([row[0] for row in meta["input_token_logprobs"][1:]])
    assert len(ours) == len(ids) - 1 - start
    text = torch.tensor([t != reference.audio_token for t in ids[start + 1:]])
    assert (ours[text] - expected[start:][text]).abs().max() < 1e-4
    assert result["output_ids"] == reference.greedy(prompt, samples(paths))


def run(engine, prompt, audio, start: int = 0):
    return engine.generate(prompt, GREEDY, audio_data=audio, return_logprob=True, logprob_start_len=start)


@pytest.mark.parametrize("case", ["one", "two"])
def test_parity_alone_and_chunked(engine, chunked, reference, clips, case):
    prompt, paths = (ONE, clips[:1]) if case == "one" else (TWO, clips[1:])
    for e in (engine, chunked):
        e.flush_cache()
        check(run(e, prompt, paths), reference, prompt, paths)
        e.check_kv()


def test_batched_cached_prefix_and_repeated_clip(engine, reference, clips):
    engine.flush_cache()
    text = "Plain text, no sound at all here."
    out = engine.generate([ONE, text, TWO], GREEDY, audio_data=[clips[0], None, clips[1:]],
                          return_logprob=True, logprob_start_len=0)
    check(out[0], reference, ONE, clips[:1])
    check(out[2], reference, TWO, clips[1:])
    assert out[1]["output_ids"] == reference.greedy(text, [])
    # the same clips as base64 and a data URI: the cached KV covers them, the encoder does not run
    runs = engine.get_server_info()["vision_encoder_runs"]
    b64 = [base64.b64encode(Path(p).read_bytes()).decode() for p in clips[1:]]
    longer = TWO + " Answer in one word."
    start = len(reference.inputs(TWO, samples(clips[1:]))["input_ids"][0]) - 1
    again = run(engine, longer, [b64[0], "data:audio/mpeg;base64," + b64[1]], start)
    assert again["meta_info"]["cached_tokens"] >= start > 20
    check(again, reference, longer, clips[1:], start)
    assert engine.get_server_info()["vision_encoder_runs"] == runs
    engine.check_kv()


def test_bad_audio_is_refused_naming_the_field(engine, clips, tmp_path):
    long = write_audio(str(tmp_path / "long.wav"), tone(4, 1.5))
    bad = {
        "junk": (ONE, b"not audio at all" * 8, "audio_data: not audio FFmpeg can decode"),
        "empty": (ONE, b"", "audio_data: not audio"),
        "long": (ONE, long, "longer than the 1.00 s"),
        "count": (ONE, clips[:2], "audio_data: the prompt has 1 audio placeholder"),
        "second": (TWO, [clips[0], b"junk"], r"audio_data\[1\]"),
        "image": (ONE, None, "image_data: Qwen2AudioForConditionalGeneration does not take images"),
    }
    for name, (prompt, audio, message) in bad.items():
        kw = {"image_data": b"x", "audio_data": clips[0]} if name == "image" else {"audio_data": audio}
        with pytest.raises(ValueError, match=message):
            engine.generate(prompt, GREEDY, **kw)
    info = engine.get_server_info()
    assert info["supports_audio"] is True and info["supports_image"] is False
    assert engine.generate(ONE, GREEDY, audio_data=clips[0])["meta_info"]["completion_tokens"] == 16


def test_text_model_refuses_audio(default_tokenizer_folder):
    from sgl.runtime.multimodal.processor import expand_prompts

    with pytest.raises(ValueError, match="audio_data: Llama is a text-only model"):
        expand_prompts(None, "Llama", [[1, 2]], False, None, None, lambda ids: ids, b"RIFF")


def test_openai_audio_parts_and_native_field(engine, clips):
    """input_audio / audio_url parts become the model's placeholder and the request's audio_data;
    /generate's audio_data is taken (no longer refused as SGLang's unserved field)."""
    from types import SimpleNamespace

    from sgl.runtime.server.errors import APIError
    from sgl.runtime.server.openai_media import ChatMedia, message_text
    from sgl.runtime.server.openai_protocol import ChatMessage
    from sgl.runtime.server.protocol import GenerateRequest

    b64 = base64.b64encode(Path(clips[0]).read_bytes()).decode()
    m = ChatMessage(role="user", content=[{"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}},
                                          {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64," + b64}},
                                          {"type": "text", "text": "Same?"}])
    media = ChatMedia()
    assert message_text(m, 0, engine, media) == f"{AUDIO}\n{AUDIO}\nSame?"
    assert media.audios == [b64, "data:audio/wav;base64," + b64]
    with pytest.raises(APIError, match="messages.0.content.0.*need a model that takes audio"):
        message_text(m, 0, SimpleNamespace(is_multimodal=False), ChatMedia())
    with pytest.raises(APIError, match="--allow-url-media"):
        message_text(ChatMessage(role="user", content=[{"type": "audio_url", "audio_url": {"url": clips[0]}}]), 0,
                     engine, ChatMedia())
    assert GenerateRequest(text=ONE, audio_data=b64).audio_data == b64
