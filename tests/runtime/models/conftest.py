"""Model tests share tests/runtime/llama_fixtures.py (tiny checkpoints, transformers references)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- vision-language model tests: each module defines `folder` (its tiny checkpoint) ---------

@pytest.fixture(scope="module")
def engine(folder):
    from sgl.runtime import Engine

    with Engine(folder, dtype="float32") as e:
        yield e


@pytest.fixture(scope="module")
def chunked(folder):
    """Chunks of 8 tokens: smaller than any image or video of the tests (16 tokens or more)."""
    from sgl.runtime import Engine

    with Engine(folder, dtype="float32", chunked_prefill_size=8) as e:
        yield e


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 10-frame 32x40 clip sampled to 4 frames (the M-RoPE families' tests: Qwen3-VL, GLM-4V)."""
    from mm_fixtures import write_video

    path = write_video(str(tmp_path_factory.mktemp("clip") / "clip.mp4"), frames=10, size=(32, 40))
    return {"data": path, "num_frames": 4}
