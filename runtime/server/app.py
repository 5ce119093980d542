"""The FastAPI app over one engine: native routes, OpenAI routes, guards and error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .bridge import EngineBridge
from .context import ServerContext, ServerSettings
from .embeddings_api import embeddings_router
from .errors import APIError, error_response
from .guard import Guard
from .jsonio import JSONOut
from .native import native_router
from .openai_api import openai_router
from .pooling_api import pooling_router

logger = logging.getLogger("sgl.server")


def create_app(engine: Any, settings: ServerSettings | None = None, shutdown_engine: bool = False) -> FastAPI:
    """An app serving `engine`. With shutdown_engine, the engine stops when the app does."""
    settings = settings or ServerSettings()
    ctx = ServerContext(engine=engine, bridge=EngineBridge(engine), settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.bridge.shutdown()
        if shutdown_engine:
            engine.shutdown()

    app = FastAPI(title="sgl", lifespan=lifespan, default_response_class=JSONOut, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.include_router(native_router(ctx))
    app.include_router(openai_router(ctx))
    app.include_router(embeddings_router(ctx))
    app.include_router(pooling_router(ctx))

    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError) -> JSONResponse:
        return error_response(e.status, e.message, e.param)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(400, f"invalid request: {e.errors()[:3]}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 404:
            return error_response(404, f"no route {request.url.path}; see /v1/models, /generate, /health")
        if e.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on {request.url.path}")
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, e: Exception) -> JSONResponse:
        logger.exception("unhandled error in a route")
        return error_response(500, f"internal error: {type(e).__name__}: {e}")

    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    return app
