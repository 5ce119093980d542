"""The native API's request bodies (what SGLang's frontend and `sgl.RuntimeEndpoint` send).

Strict: unknown fields and wrong types are a 400 naming the field. `sampling_params` stays a dict
here; the engine's `SamplingParams.from_dict` validates its fields and ranges.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import APIError
from .guard import reject_non_finite

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
MAX_SEED = 2**63 - 1
_UNSERVED = ("return_hidden_states", "return_entropy", "return_bytes", "background", "input_embeds", "token_ids_logprob", "session_params", "lora_path", "lora_id", "custom_logit_processor",
             "bootstrap_host", "bootstrap_port", "bootstrap_room", "bootstrap_pair_key", "data_parallel_rank")


class GenerateRequest(BaseModel):
    model_config = _STRICT

    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None
    return_logprob: bool = False
    logprob_start_len: int | None = None  # -1: no prompt logprobs
    top_logprobs_num: int = Field(0, ge=0)
    return_text_in_logprobs: bool = False
    stream: bool = False
    image_data: Any = None  # per prompt: an image or a list (base64, data URI; SGLang's "video:" frames)
    video_data: Any = None  # per prompt: a video or a list (base64 / data URI of a file)
    audio_data: Any = None  # per prompt: a clip or a list (base64 / data URI of WAV, FLAC, MP3)
    modalities: list[str] | None = None  # sent by SGLang's frontend with images; unused
    rid: str | list[str] | None = None
    # sglang-router forwards its own GenerateRequest, every field of SGLang's: these are taken
    # at their defaults (the model it routed on; SGLang's metrics switches and labels) ...
    model: str | None = None
    log_metrics: bool = True
    no_logs: bool = False
    custom_labels: dict[str, Any] | None = None
    conversation_id: str | None = None
    extra_key: str | None = None
    # ... and these name features this server lacks: refused unless left at null/false
    return_hidden_states: bool = False
    return_entropy: bool = False
    return_bytes: bool = False
    background: bool = False
    input_embeds: Any = None
    token_ids_logprob: Any = None
    session_params: Any = None
    lora_path: Any = None
    lora_id: Any = None
    custom_logit_processor: Any = None
    bootstrap_host: Any = None
    bootstrap_port: Any = None
    bootstrap_room: Any = None
    bootstrap_pair_key: Any = None
    data_parallel_rank: Any = None

    @model_validator(mode="after")
    def _refuse_unserved(self) -> GenerateRequest:
        for name in _UNSERVED:
            if getattr(self, name) not in (None, False):
                raise APIError(400, f"`{name}` is not served here (SGLang's feature); leave it out or null", name)
        return self

    def num_prompts(self) -> int | None:
        """How many prompts a list input holds; None for a single prompt."""
        if isinstance(self.text, list):
            return len(self.text)
        if self.input_ids and isinstance(self.input_ids[0], list):
            return len(self.input_ids)
        return None


class AbortRequest(BaseModel):
    model_config = _STRICT

    rid: str


class ConcateAndAppendRequest(BaseModel):
    """SGLang's KV-cache join; accepted for compatibility (the frontend falls back to text)."""

    model_config = ConfigDict(extra="allow")


def clean_sampling_params(params: dict[str, Any] | None, engine: Any, path: str = "sampling_params") -> dict[str, Any]:
    """Drops null values (SGLang's frontend sends unset fields as null) and rejects values the
    engine would accept but that cannot be served: non-finite numbers, more new tokens than the
    context holds, seeds torch cannot take, top-logprob counts beyond the vocabulary."""
    params = {k: v for k, v in (params or {}).items() if v is not None}
    reject_non_finite(params, path)
    max_new = params.get("max_new_tokens")
    if isinstance(max_new, int) and max_new > engine.context_length:
        raise APIError(400, f"`{path}.max_new_tokens`={max_new} is over the context length "
                            f"({engine.context_length}): ask for fewer tokens", f"{path}.max_new_tokens")
    seed = params.get("seed")
    if isinstance(seed, int) and not -MAX_SEED <= seed <= MAX_SEED:
        raise APIError(400, f"`{path}.seed` must fit in 64 bits (|seed| <= {MAX_SEED})", f"{path}.seed")
    return params


def check_top_logprobs(num: int, engine: Any, name: str = "top_logprobs_num") -> None:
    vocab = engine.model_config.vocab_size
    if num > vocab:
        raise APIError(400, f"`{name}`={num} is over the vocabulary size ({vocab})", name)
