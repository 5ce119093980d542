"""Audio over HTTP on a tiny random Qwen2-Audio server (127.0.0.1): /generate's audio_data and
the openai client's input_audio part give the Engine's own output for the same clip and
prompt; a bad clip is a 400 naming the field, and the server keeps serving."""

from __future__ import annotations

import base64
import os
import sys

import openai
import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime"))
from audio_fixtures import tone, write_audio  # noqa: E402

GREEDY = {"max_new_tokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """A 0.8 s stereo 22.05 kHz WAV (the server decodes, downmixes and resamples it)."""
    path = str(tmp_path_factory.mktemp("clips") / "tone.wav")
    return base64.b64encode(open(write_audio(path, tone(3, 0.8, 22050, 2), 22050), "rb").read()).decode()


@pytest.fixture(scope="module")
def engine_out(audio_model, clip):
    """The Engine's answers (in this process) to the native prompt and the chat template's."""
    from sgl.runtime import Engine
    from sgl.runtime.multimodal.random_audio import AUDIO
    from transformers import AutoTokenizer

    chat = AutoTokenizer.from_pretrained(audio_model).apply_chat_template(
        [{"role": "user", "content": f"{AUDIO}\nWhat is this sound?"}], tokenize=False, add_generation_prompt=True)
    native = f"Listen: {AUDIO} what is it?"
    with Engine(audio_model, dtype="float32") as e:
        return {p: e.generate(p, GREEDY, audio_data=clip) for p in (native, chat)}


def generate(server, text: str, **media) -> requests.Response:
    return requests.post(server.url + "/generate", json={"text": text, "sampling_params": GREEDY, **media}, timeout=120)


def test_native_audio_data_equals_the_engine(audio_server, clip, engine_out):
    info = requests.get(audio_server.url + "/get_model_info", timeout=30).json()
    assert info["supports_audio"] is True
    native = next(p for p in engine_out if p.startswith("Listen"))
    r = generate(audio_server, native, audio_data=clip)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == engine_out[native]["text"]
    assert r.json()["meta_info"]["prompt_tokens"] == engine_out[native]["meta_info"]["prompt_tokens"] > 20


def test_openai_input_audio_part_equals_the_engine(audio_server, clip, engine_out):
    client = openai.OpenAI(base_url=audio_server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
    content = [{"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}},
               {"type": "text", "text": "What is this sound?"}]
    out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}],
                                         max_tokens=8, temperature=0)
    chat = next(p for p in engine_out if not p.startswith("Listen"))
    assert out.choices[0].message.content == engine_out[chat]["text"]
    assert out.usage.prompt_tokens == engine_out[chat]["meta_info"]["prompt_tokens"]


def test_bad_audio_is_a_400_and_the_server_keeps_serving(audio_server, clip, engine_out):
    from sgl.runtime.multimodal.random_audio import AUDIO

    junk = base64.b64encode(b"RIFF this is not a wave file at all").decode()
    for media, message in [({"audio_data": junk}, "audio_data"), ({"audio_data": "not base64!"}, "audio_data"),
                           ({"audio_data": [clip, clip]}, "1 audio placeholder")]:
        r = generate(audio_server, f"Hear {AUDIO} now", **media)
        assert r.status_code == 400, (media, r.text)
        assert message in r.json()["error"]["message"], r.text
    client = openai.OpenAI(base_url=audio_server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
    bad = {"type": "input_audio", "input_audio": {"data": junk, "format": "wav"}}
    with pytest.raises(openai.BadRequestError, match="audio"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [bad]}], max_tokens=4)
    test_native_audio_data_equals_the_engine(audio_server, clip, engine_out)
