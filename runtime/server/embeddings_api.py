"""OpenAI's /v1/embeddings over `Engine.encode` (embedding models).

`input` is a string, a list of strings, one list of token ids or a list of them, or (SGLang's
multimodal form) a list of {"text", "image"} items: on a vision-language embedder (GME-Qwen2-VL)
each item is the image's placeholder then the text, on CLIP an item is a text or an image
(`multimodal_calls`). Images are what image_data takes (data URI, base64; URLs with
--allow-url-media). Vectors come
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


class MultimodalInput(BaseModel):
    text: str | None = None
    image: str | None = None


class EmbeddingRequest(BaseModel):
    model_config = _OPENAI
    input: str | list[str] | list[int] | list[list[int]] | list[MultimodalInput]
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


def multimodal_calls(engine: Any, items: list[MultimodalInput]) -> list[tuple[dict[str, Any], list[int]]]:
    """{"text", "image"} items -> Engine.encode calls, each with the item indices it answers:
    one call on a vision-language embedder (image placeholder + text per item), on CLIP one for
    the texts and one for the images (an item is one or the other)."""
    check_count(len(items), "input")
    for i, it in enumerate(items):
        if not it.text and not it.image:
            raise APIError(400, f"`input.{i}` has neither text nor image", f"input.{i}")
    media = getattr(engine, "_media", None)
    if media is not None:
        mark = media.placeholder(engine.tokenizer, "image")
        if mark is None:
            raise APIError(400, "`input`: this model takes no images", "input")
        prompts = [(mark if it.image else "") + (it.text or "") for it in items]
        return [({"prompt": prompts, "image_data": [it.image for it in items]}, list(range(len(items))))]
    if not hasattr(engine._scheduler.runner.model, "embed_images"):
        if any(it.image for it in items):
            raise APIError(400, "`input`: this embedding model takes no images", "input")
        return [({"prompt": [it.text for it in items]}, list(range(len(items))))]
    for i, it in enumerate(items):
        if it.text and it.image:
            raise APIError(400, f"`input.{i}`: CLIP embeds a text or an image, not both in one item", f"input.{i}")
    texts = [i for i, it in enumerate(items) if it.text]
    images = [i for i, it in enumerate(items) if it.image]
    calls = [({"prompt": [items[i].text for i in texts]}, texts)] if texts else []
    return calls + ([({"image_data": [items[i].image for i in images]}, images)] if images else [])


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
        if isinstance(req.input, list) and req.input and isinstance(req.input[0], MultimodalInput):
            calls = multimodal_calls(engine, req.input)  # type: ignore[arg-type]
        else:
            calls = [(encode_inputs(req.input), [])]
        answers: dict[int, dict] = {}
        try:
            with pooling_errors((("input_ids", "input"), ("prompt", "input"), ("image_data", "input"))):
                for kwargs, indices in calls:
                    out = await bridge.call(engine.encode, **kwargs, dimensions=req.dimensions)
                    raise_engine_failure(out)
                    out = [out] if isinstance(out, dict) else out
                    answers.update(zip(indices or range(len(out)), out))
        except APIError as e:  # the media loader names image_data without backticks: an item's image
            if e.param is None and e.message.startswith("image_data"):
                raise APIError(e.status, "`input` image: " + e.message.split(": ", 1)[-1], "input") from None
            raise
        results = [answers[i] for i in sorted(answers)]
        data = [{"object": "embedding", "index": i, "embedding": vector(r["embedding"], req.encoding_format)}
                for i, r in enumerate(results)]
        tokens = sum(r["meta_info"]["prompt_tokens"] for r in results)
        return JSONOut({"object": "list", "data": data, "model": ctx.model_name,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return router
