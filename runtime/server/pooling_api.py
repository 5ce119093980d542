"""SGLang's pooling routes beside /v1/embeddings (embeddings_api.py):

- /encode: {"text" | "input_ids", normalize, dimensions, truncate} -> {"embedding", "meta_info"}
  (a list for a list input), Engine.encode.
- /classify: the same input -> {"label", "scores", "embedding" (the scores, as SGLang names
  them), "meta_info"}, Engine.classify.
- /v1/rerank: {"query", "documents", top_n, return_documents} -> SGLang's list of {"score",
  "index", "document"?, "meta_info"}, best first.
- /v1/score: {"query"?, "items"} -> {"object": "scoring", "scores" (in item order), "usage"}: with
  a query, each item's relevance to it (as /v1/rerank); without, each item's reward. With
  `label_token_ids` on a generation model (SGLang's form; decoder rerankers' yes / no): per item
  the probability of each label token after query + item (Engine.score_labels).

Bodies are strict (unknown fields are a 400 naming them); `truncate` (beyond SGLang) cuts inputs
past the model's limit instead of answering 400."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from .bridge import raise_engine_failure
from .context import ServerContext
from .errors import APIError
from .guard import parse
from .jsonio import JSONOut
from .pooling_errors import check_count, pooling_errors
from .task_check import require_pooling

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
_TEXT = (("prompt", "text"),)  # Engine.encode's field -> the route's


class EncodeRequest(BaseModel):
    model_config = _STRICT
    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    rid: str | list[str] | None = None
    normalize: bool | None = None
    dimensions: int | None = None
    truncate: bool = False
    model: str | None = None


class RerankRequest(BaseModel):
    model_config = _STRICT
    query: str
    documents: list[str]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True
    truncate: bool = False
    model: str | None = None


class ScoreRequest(BaseModel):
    model_config = _STRICT
    query: str | None = None
    items: str | list[str]
    label_token_ids: list[int] | None = None  # SGLang's next-token scoring of a generation model
    apply_softmax: bool = False  # with label_token_ids: softmax over the labels
    item_first: bool = False  # with label_token_ids: the prompt is item + query
    truncate: bool = False
    model: str | None = None


def _inputs(req: EncodeRequest) -> dict[str, Any]:
    if (req.text is None) == (req.input_ids is None):
        raise APIError(400, "give exactly one of `text` (a string or a list of strings) or `input_ids`", "text")
    if isinstance(req.text, list):
        check_count(len(req.text), "text")
    elif req.input_ids and isinstance(req.input_ids[0], list):
        check_count(len(req.input_ids), "input_ids")
    return {"prompt": req.text, "input_ids": req.input_ids, "truncate": req.truncate}


def pooling_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    engine, bridge, limit = ctx.engine, ctx.bridge, ctx.settings.max_body_bytes

    @router.post("/encode")
    async def encode(request: Request) -> JSONOut:
        req = await parse(request, EncodeRequest, limit)
        require_pooling(engine, "/encode")
        with pooling_errors(_TEXT):
            out = await bridge.call(engine.encode, **_inputs(req), rid=req.rid, normalize=req.normalize,
                                    dimensions=req.dimensions)
            raise_engine_failure(out)
        return JSONOut(out)

    @router.post("/classify")
    async def classify(request: Request) -> JSONOut:
        req = await parse(request, EncodeRequest, limit)
        require_pooling(engine, "/classify", classifier=True)
        for name in ("rid", "normalize", "dimensions"):
            if getattr(req, name) is not None:
                raise APIError(400, f"`{name}` applies to /encode; /classify takes text or input_ids and truncate",
                               name)
        with pooling_errors(_TEXT):
            out = await bridge.call(engine.classify, **_inputs(req))
            raise_engine_failure(out)
        for r in out if isinstance(out, list) else [out]:
            r["embedding"] = r["scores"]
        return JSONOut(out)

    @router.post("/v1/rerank")
    async def rerank(request: Request) -> JSONOut:
        req = await parse(request, RerankRequest, limit)
        require_pooling(engine, "/v1/rerank")
        check_count(len(req.documents), "documents")
        with pooling_errors():
            results = await bridge.call(engine.rerank_results, req.query, req.documents, req.truncate)
            raise_engine_failure(results)
        ranked = sorted(range(len(results)), key=lambda i: -results[i]["score"])[: req.top_n]
        return JSONOut([{"score": results[i]["score"], "index": i, "meta_info": results[i]["meta_info"],
                         **({"document": req.documents[i]} if req.return_documents else {})} for i in ranked])

    @router.post("/v1/score")
    async def score(request: Request) -> JSONOut:
        req = await parse(request, ScoreRequest, limit)
        if req.label_token_ids is not None:
            return await _label_scores(req)
        for name in ("apply_softmax", "item_first"):
            if getattr(req, name):
                raise APIError(400, f"`{name}` applies with `label_token_ids` (a generation model's next-token "
                                    "scores); leave it out", name)
        require_pooling(engine, "/v1/score", classifier=req.query is None)
        items = [req.items] if isinstance(req.items, str) else req.items
        check_count(len(items), "items")
        with pooling_errors((("documents", "items"), ("prompt", "items"))):
            if req.query is None:
                results = await bridge.call(engine.score_results, items, truncate=req.truncate)
            else:
                results = await bridge.call(engine.rerank_results, req.query, items, req.truncate)
            raise_engine_failure(results)
        tokens = sum(r["meta_info"]["prompt_tokens"] for r in results)
        return JSONOut({"id": "score-" + uuid.uuid4().hex, "object": "scoring", "model": ctx.model_name,
                        "scores": [r["score"] for r in results],
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _label_scores(req: ScoreRequest) -> JSONOut:
        if engine.task != "generate":
            raise APIError(400, "`label_token_ids` scores a generation model's next tokens; this is a pooling "
                                "model: leave it out to score items with the model's own head", "label_token_ids")
        if req.query is None:
            raise APIError(400, "`query` is required with `label_token_ids`", "query")
        items = [req.items] if isinstance(req.items, str) else req.items
        check_count(len(items), "items")
        with pooling_errors():
            results = await bridge.call(engine.score_labels, req.query, items, req.label_token_ids,
                                        req.apply_softmax, req.item_first)
        tokens = sum(r["prompt_tokens"] for r in results)
        return JSONOut({"id": "score-" + uuid.uuid4().hex, "object": "scoring", "model": ctx.model_name,
                        "scores": [r["scores"] for r in results],
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return router
