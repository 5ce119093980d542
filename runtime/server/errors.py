"""Error responses in OpenAI's shape, used by every route (native ones included):

    {"error": {"message": str, "type": str, "param": str | None, "code": int}}

Messages name the offending field and say how to fix it.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    500: "server_error",
    503: "service_unavailable",
}
# pydantic's names for the members of a union; they are not field names
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "function-after", "function-plain"}


class APIError(Exception):
    """Raised by a route; becomes an error response with this status."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": status}}


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p))]
    return ".".join(parts)


def from_validation_error(e: ValidationError, valid_fields: list[str] | None = None) -> APIError:
    """The first few problems of a pydantic error, each naming its field, as one 400."""
    problems: list[str] = []
    first_param: str | None = None
    seen: set[str] = set()
    for err in e.errors():
        path = _field_path(err["loc"])
        if err["type"] == "json_invalid":
            return APIError(400, f"the request body is not valid JSON ({err['msg']}); send a JSON object")
        if err["type"] == "model_type" and not path:
            return APIError(400, "the request body must be a JSON object")
        if path in seen:  # one message per field (a union reports each member)
            continue
        seen.add(path)
        first_param = first_param or path or None
        if err["type"] == "extra_forbidden":
            hint = f"; valid fields: {', '.join(valid_fields)}" if valid_fields else ""
            problems.append(f"unknown field `{path}`: remove it{hint}")
        elif err["type"] == "missing":
            problems.append(f"`{path}` is required")
        else:
            got = err.get("input")
            shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
            problems.append(f"`{path}`: {err['msg']} (got {shown})")
        if len(problems) == 3:
            break
    return APIError(400, "; ".join(problems) or str(e), first_param)
