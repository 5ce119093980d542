"""The default model (SmolLM2-135M-Instruct from its GGUF) loads and answers correctly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sgl.runtime import Engine
from sgl.runtime.loader import default_model_path


@pytest.fixture(scope="module")
def engine():
    with Engine() as e:
        yield e


def test_default_model_knows_the_capital_of_france(engine):
    assert engine.model_path == default_model_path()
    prompt = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True)
    out = engine.generate(prompt, {"max_new_tokens": 32, "temperature": 0})
    assert "Paris" in out["text"]
    assert out["meta_info"]["finish_reason"]["type"] in ("stop", "length")


def test_cli_chat_answers(engine):
    """What `make demo` runs."""
    done = subprocess.run([sys.executable, "-m", "sgl.runtime.cli", "chat", "What is the capital of France?",
                           "--max-new-tokens", "24"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Paris" in done.stdout


def test_unreachable_hub_id_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="could not fetch 'no-such-org/no-such-model'"):
        Engine("no-such-org/no-such-model")
