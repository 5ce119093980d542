"""sgl: a structured-generation language with an embedded inference engine.

``import sgl`` gives the language (SGLang's frontend API); ``sgl.runtime`` is the engine.
"""

from __future__ import annotations

from typing import Any

from sgl.api import (
    assistant,
    assistant_begin,
    assistant_end,
    flush_cache,
    function,
    gen,
    gen_int,
    gen_string,
    get_server_info,
    image,
    select,
    separate_reasoning,
    set_default_backend,
    system,
    system_begin,
    system_end,
    user,
    user_begin,
    user_end,
    video,
)
from sgl.backend import BaseBackend, OpenAI, Runtime, RuntimeEndpoint
from sgl.choices import (
    ChoicesDecision,
    ChoicesSamplingMethod,
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)
from sgl.global_config import global_config
from sgl.state import ProgramState

__version__ = "0.1.0"

__all__ = [
    "BaseBackend", "ChoicesDecision", "ChoicesSamplingMethod", "Engine", "OpenAI", "ProgramState",
    "Runtime", "RuntimeEndpoint", "assistant", "assistant_begin", "assistant_end", "flush_cache",
    "function", "gen", "gen_int", "gen_string", "get_server_info", "global_config",
    "greedy_token_selection", "image", "select", "separate_reasoning", "set_default_backend", "system", "system_begin",
    "system_end", "token_length_normalized", "unconditional_likelihood_normalized", "user",
    "user_begin", "user_end", "video",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    # NOTE: the engine (torch, models) loads only when a program asks for it.
    if name == "Engine":
        from sgl.runtime import Engine

        return Engine
    raise AttributeError(f"module 'sgl' has no attribute {name!r}")
