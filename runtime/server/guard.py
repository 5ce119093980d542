"""Request guards: the API key, the body size limit, and JSON body parsing into a pydantic model.

`Guard` is a plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which would buffer
streaming responses and hide client disconnects from the routes).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import APIError, error_body, from_validation_error

M = TypeVar("M", bound=BaseModel)
OPEN_PATHS = frozenset({"/health"})  # answered without an API key (load balancers probe it)


class Guard:
    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                await _send_error(send, 401, "missing or wrong API key: send the header "
                                             "`Authorization: Bearer <key>` with the server's --api-key")
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _send_error(send, 413, f"the request body is over the server's limit of "
                                         f"{self.max_body_bytes} bytes (--max-body-bytes)")
            return
        await self.app(scope, receive, send)


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, enforcing the size limit on chunked uploads too (no content-length)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"the request body is over the server's limit of {limit} bytes (--max-body-bytes)")
    return bytes(body)


async def parse(request: Request, model: type[M], limit: int) -> M:
    """The body validated as `model`; any problem is a 400 that names the field."""
    raw = await read_body(request, limit)
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        strict_fields = model.model_config.get("extra") == "forbid"
        raise from_validation_error(e, sorted(model.model_fields) if strict_fields else None) from None


def reject_non_finite(value: Any, path: str) -> None:
    """NaN and Infinity (which Python's JSON accepts) would poison a whole batch's logits."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise APIError(400, f"`{path}` is {value}: use a finite number", path)
    if isinstance(value, dict):
        for k, v in value.items():
            reject_non_finite(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            reject_non_finite(v, f"{path}.{i}")
