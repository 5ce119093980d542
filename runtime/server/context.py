"""What every route reads: the engine, the bridge to it, and the server's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bridge import EngineBridge

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 30000
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    served_model_name: str | None = None  # the OpenAI `model` id; default: the model path
    tool_call_parser: str | None = None  # openai_tool_parsers.PARSERS; default: from the chat template
    reasoning_parser: str | None = None  # openai_reasoning.REASONING_PARSERS; default: none

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port}: use 0..65535")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        from .openai_reasoning import get_reasoning_parser
        from .openai_tool_parsers import get_parser

        if self.tool_call_parser is not None:
            get_parser(self.tool_call_parser)  # raises naming the flag and the choices
        if self.reasoning_parser is not None:
            get_reasoning_parser(self.reasoning_parser)
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key is empty: give a non-empty key or leave it out")


@dataclass(frozen=True)
class ServerContext:
    engine: Any
    bridge: EngineBridge
    settings: ServerSettings

    @property
    def model_name(self) -> str:
        return self.settings.served_model_name or str(self.engine.model_path)
