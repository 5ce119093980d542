"""SGLang's native routes: /generate, model and server info, cache, health, abort.

Bodies are validated strictly (protocol.py); the engine validates sampling values and raises
ValueError naming the field, which becomes a 400 here.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from ..info import model_info as model_info_of
from ..results import IncrementalStream
from .bridge import ClientGone, EngineFailure
from .context import ServerContext
from .errors import APIError, error_body
from .guard import parse
from .jsonio import JSONOut, dumps
from .media_guard import check_client_media
from .protocol import (
    AbortRequest,
    ConcateAndAppendRequest,
    GenerateRequest,
    check_top_logprobs,
    clean_sampling_params,
)
from .task_check import require_generation

HEALTH_TIMEOUT_S = 30.0
_PARAM = re.compile(r"^`?(sampling_params(?:\.\w+)?)")


@contextmanager
def engine_errors() -> Iterator[None]:
    """The engine's input errors -> 400 (its messages name the field); a failed step -> 500; a
    stopped engine -> 503."""
    try:
        yield
    except EngineFailure as e:
        raise APIError(500, f"generation failed: {e}") from None
    except (ValueError, TypeError, OverflowError) as e:
        match = _PARAM.match(str(e))
        raise APIError(400, str(e), match.group(1) if match else None) from None
    except RuntimeError as e:
        if "shut down" in str(e):
            raise APIError(503, "the engine is shutting down; retry on another server") from None
        if "scheduler thread" in str(e):
            raise APIError(503, f"the engine stopped serving: {e}") from None
        raise


def sse(payload: Any) -> str:
    return f"data: {dumps(payload)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


class TokenizeRequest(BaseModel):
    """SGLang's /tokenize body. `sgl.RuntimeEndpoint` uses it to score `select` choices."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str | list[str]
    add_special_tokens: bool = True
    model: str | None = None


def native_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    engine, bridge, limit = ctx.engine, ctx.bridge, ctx.settings.max_body_bytes

    @router.post("/generate")
    async def generate(request: Request) -> Response:
        req = await parse(request, GenerateRequest, limit)
        require_generation(engine, "/generate")
        kwargs = _engine_kwargs(req, ctx)
        if req.stream:
            if req.num_prompts() is not None:
                raise APIError(400, "`stream`: streaming takes one prompt; send a list without streaming", "stream")
            rid = kwargs.pop("rid")
            with engine_errors():
                it = await bridge.open_stream(rid, **kwargs)
            return StreamingResponse(_sse_stream(ctx, rid, it), media_type="text/event-stream")
        rids = kwargs["rid"] if isinstance(kwargs["rid"], list) else [kwargs["rid"]]
        with engine_errors():
            try:
                result = await bridge.generate(request, rids, **kwargs)
            except ClientGone:
                return Response(status_code=499)
        return JSONOut(result)

    @router.get("/get_model_info")
    @router.get("/model_info")
    async def model_info() -> dict[str, Any]:
        return {**model_info_of(engine), "served_model_name": ctx.model_name}

    @router.get("/server_info")
    @router.get("/get_server_info")
    async def server_info() -> dict[str, Any]:
        info = await bridge.call(engine.get_server_info)
        return {**info, "served_model_name": ctx.model_name, "max_body_bytes": limit,
                "api_key_required": ctx.settings.api_key is not None}

    @router.api_route("/flush_cache", methods=["GET", "POST"])
    async def flush_cache() -> dict[str, Any]:
        if not await bridge.call(engine.flush_cache):
            raise APIError(400, "the cache was not flushed: requests are queued or running; retry when idle")
        return {"success": True, "message": "cache flushed"}

    @router.get("/get_load")
    async def get_load() -> list[dict[str, Any]]:
        """SGLang's load report (what sglang-router polls): one entry per data-parallel replica."""
        info = await bridge.call(engine.get_server_info)
        return [{"dp_rank": i, "num_reqs": r["num_running_reqs"] + r["num_waiting_reqs"],
                 "num_waiting_reqs": r["num_waiting_reqs"], "num_tokens": r["held_slots"]}
                for i, r in enumerate(info.get("replicas", [info]))]

    @router.get("/health")
    async def health() -> dict[str, str]:
        try:
            await asyncio.wait_for(bridge.call(engine.get_server_info), HEALTH_TIMEOUT_S)
        except Exception as e:
            raise APIError(503, f"the engine does not answer: {type(e).__name__}: {e}") from None
        return {"status": "ok"}

    @router.get("/health_generate")
    async def health_generate() -> dict[str, str]:
        rid = "health-" + uuid.uuid4().hex
        kwargs = {"input_ids": [0], "sampling_params": {"max_new_tokens": 1, "temperature": 0.0}, "rid": rid}
        try:
            await asyncio.wait_for(bridge.generate(None, [rid], **kwargs), HEALTH_TIMEOUT_S)
        except Exception as e:
            engine.abort(rid)
            raise APIError(503, f"the engine cannot generate: {type(e).__name__}: {e}") from None
        return {"status": "ok"}

    @router.post("/abort_request")
    async def abort_request(request: Request) -> dict[str, Any]:
        body = await parse(request, AbortRequest, limit)
        engine.abort(body.rid)
        return {"success": True}

    @router.post("/concate_and_append_request")
    async def concate_and_append(request: Request) -> dict[str, Any]:
        await parse(request, ConcateAndAppendRequest, limit)
        return {"success": True}

    @router.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        body = await parse(request, TokenizeRequest, limit)
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt

        def encode() -> list[list[int]]:
            return [list(engine.tokenizer(t, add_special_tokens=body.add_special_tokens)["input_ids"]) for t in texts]

        ids = await bridge.call(encode)
        single = isinstance(body.prompt, str)
        return {"tokens": ids[0] if single else ids, "count": len(ids[0]) if single else [len(x) for x in ids],
                "max_model_len": engine.context_length}

    return router


def _engine_kwargs(req: GenerateRequest, ctx: ServerContext) -> dict[str, Any]:
    engine = ctx.engine
    if (req.text is None) == (req.input_ids is None):
        raise APIError(400, "give exactly one of `text` (a string or a list of strings) or `input_ids`", "text")
    n = req.num_prompts()
    sp: Any = req.sampling_params
    if isinstance(sp, list):
        if n is None or len(sp) != n:
            raise APIError(400, "`sampling_params`: a list needs one dict per prompt in a list input", "sampling_params")
        sp = [clean_sampling_params(p, engine, f"sampling_params.{i}") for i, p in enumerate(sp)]
    else:
        sp = clean_sampling_params(sp, engine)
    check_top_logprobs(req.top_logprobs_num, engine)
    for name in ("image_data", "video_data", "audio_data"):
        check_client_media(getattr(req, name), name, engine.config.allow_url_media)
    rid = req.rid
    if rid is None:
        rid = [uuid.uuid4().hex for _ in range(n)] if n is not None else uuid.uuid4().hex
    return {"prompt": req.text, "input_ids": req.input_ids, "sampling_params": sp,
            "return_logprob": req.return_logprob, "logprob_start_len": req.logprob_start_len,
            "top_logprobs_num": req.top_logprobs_num, "return_text_in_logprobs": req.return_text_in_logprobs,
            "rid": rid, "image_data": req.image_data, "video_data": req.video_data, "audio_data": req.audio_data}


async def _sse_stream(ctx: ServerContext, rid: str, it: Iterator[dict]) -> AsyncIterator[str]:
    incremental = IncrementalStream()  # logprob rows new in each event, as SGLang streams them
    try:
        async for _, chunk in ctx.bridge.merge_streams([(rid, it)]):
            yield sse(incremental.chunk(chunk))
    except Exception as e:  # the engine failed mid-stream: tell the client, then end the stream
        yield sse(error_body(500, f"generation failed: {type(e).__name__}: {e}"))
    yield SSE_DONE
