"""OpenAI request bodies (/v1/completions, /v1/chat/completions).

Types are strict (a string where a number belongs is a 400 naming the field) and ranges follow
OpenAI's. Unknown fields are ignored, as OpenAI-compatible servers do, so that clients sending
newer or unused OpenAI options keep working. Extra fields from SGLang / vLLM (`regex`,
`json_schema`, `top_k`, `min_p`, `repetition_penalty`, ...) pass through to the sampler.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_OPENAI = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False, populate_by_name=True)


class StreamOptions(BaseModel):
    model_config = _OPENAI
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = _OPENAI
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = _OPENAI
    type: Literal["text", "json_object", "json_schema", "structural_tag"]
    json_schema: JsonSchemaFormat | None = None
    # SGLang's structural tag: free text until a trigger, then {begin, schema, end}
    structures: list[dict[str, Any]] | None = None
    triggers: list[str] | None = None


class SamplingFields(BaseModel):
    """What completions and chat completions share."""

    model_config = _OPENAI

    model: str | None = None  # any name is served by the loaded model
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=-(2**63) + 1, le=2**63 - 1)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    # beyond OpenAI (SGLang / vLLM extra body fields)
    regex: str | None = None
    json_schema: str | dict[str, Any] | None = None
    ebnf: str | None = None  # a GBNF or Lark grammar
    token_healing: bool | None = None  # back off the prompt's last token (sampling/healing.py)
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    skip_special_tokens: bool | None = None
    stop_token_ids: list[int] | None = None
    stop_regex: str | list[str] | None = None
    no_stop_trim: bool | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=128)


class ImageURL(BaseModel):
    model_config = _OPENAI
    url: str
    detail: str | None = None


class InputAudio(BaseModel):
    model_config = _OPENAI
    data: str
    format: str | None = None


class ContentPart(BaseModel):
    model_config = _OPENAI
    type: Literal["text", "image_url", "video_url", "input_audio", "audio_url", "file"]
    text: str | None = None
    image_url: ImageURL | None = None
    video_url: ImageURL | None = None  # {"url": a data URI of a video file, or a path / URL where allowed}
    input_audio: InputAudio | None = None  # OpenAI's {"data": base64, "format": "wav" | "mp3"}
    audio_url: ImageURL | None = None  # {"url": a data URI of an audio file, or a path / URL where allowed}


class ChatMessage(BaseModel):
    model_config = _OPENAI
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn's calls, sent back
    tool_call_id: str | None = None  # a `tool` turn: the call it answers


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    separate_reasoning: bool = True  # with --reasoning-parser: thinking into reasoning_content
