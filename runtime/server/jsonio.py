"""JSON out: non-finite floats (a -inf logprob of a token a grammar masked) become null, since
strict JSON has no Infinity or NaN and clients reject them."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(payload: Any) -> str:
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # only then pay for the walk
        return json.dumps(_finite(payload), ensure_ascii=False, separators=(",", ":"))


class JSONOut(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
