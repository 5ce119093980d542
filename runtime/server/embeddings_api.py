"""OpenAI's /v1/embeddings over `Engine.encode` (embedding models).

`input` is a string, a list of strings, one list of token ids or a list of them; vectors come
back as float lists or, with `encoding_format: base64`, as base64 of little-endian float32
bytes (what the `openai` client asks for by default and decodes). `dimensions` keeps the first
entries of a Matryoshka model's vectors (Engine.encode checks the model allows it)."""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from .bridge import raise_engine_failure
from .context import ServerContext
from .errors import APIError
from .guard import parse
from .jsonio import JSONOut
from .openai_protocol import _OPENAI
from .pooling_errors import check_count, pooling_errors
from .task_check import require_pooling


class EmbeddingRequest(BaseModel):
    model_config = _OPENAI
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def encode_inputs(value: Any) -> dict[str, Any]:
    """`input` -> Engine.encode's keyword: {"prompt": ...} or {"input_ids": ...}."""
    if isinstance(value, str):
        value = [value]
        single = True
    else:
        single = False
    if not value:
        raise APIError(400, "`input` is empty: give a string, a list of strings or token ids", "input")
    check_count(len(value), "input")
    if all(isinstance(v, str) for v in value):
        for i, text in enumerate(value):
            if not text:
                path = "input" if single else f"input.{i}"
                raise APIError(400, f"`{path}` is an empty string: every input needs some text", path)
        return {"prompt": value[0] if single else value}
    if all(isinstance(v, int) for v in value):
        return {"input_ids": [value]}
    for i, ids in enumerate(value):
        if not ids:
            raise APIError(400, f"`input.{i}` is an empty list of token ids", f"input.{i}")
    return {"input_ids": value}


def vector(values: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def embeddings_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    engine, bridge, limit = ctx.engine, ctx.bridge, ctx.settings.max_body_bytes

    @router.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        req = await parse(request, EmbeddingRequest, limit)
        require_pooling(engine, "/v1/embeddings")
        kwargs = encode_inputs(req.input)
        with pooling_errors((("input_ids", "input"), ("prompt", "input"))):
            results = await bridge.call(engine.encode, **kwargs, dimensions=req.dimensions)
            raise_engine_failure(results)
        if isinstance(results, dict):
            results = [results]
        data = [{"object": "embedding", "index": i, "embedding": vector(r["embedding"], req.encoding_format)}
                for i, r in enumerate(results)]
        tokens = sum(r["meta_info"]["prompt_tokens"] for r in results)
        return JSONOut({"object": "list", "data": data, "model": ctx.model_name,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return router
