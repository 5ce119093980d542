"""Shared fixtures: tiny random checkpoints saved to temp folders, and the default model."""

from __future__ import annotations

import pytest
from sgl.runtime.loader import default_model_path
from sgl.runtime.loader.gguf_file import converted_folder


@pytest.fixture(scope="session")
def default_tokenizer_folder() -> str:
    """config.json + tokenizer files of the default model (converted from its GGUF once)."""
    return converted_folder(default_model_path())
