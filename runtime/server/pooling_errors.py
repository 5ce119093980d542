"""What every pooling route shares: the engine's input errors as 400s naming the field, and the
per-request input limit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import APIError
from .native import engine_errors

MAX_INPUTS = 2048  # inputs per request (OpenAI's limit for /v1/embeddings); more: split the request
_FIELD = re.compile(r"`([\w.]+)`")


@contextmanager
def pooling_errors(renames: tuple[tuple[str, str], ...] = ()) -> Iterator[None]:
    """engine_errors, with `param` the first field the engine's message names (renamed to the
    route's own field names: input_ids -> input on /v1/embeddings)."""
    try:
        with engine_errors():
            yield
    except APIError as e:
        message, param = e.message, e.param
        if e.status == 400 and param is None and (match := _FIELD.search(message)):
            param = match.group(1)
        for old, new in renames:
            message = message.replace(f"`{old}", f"`{new}")
            if param is not None and (param == old or param.startswith(old + ".")):
                param = new + param[len(old):]
        raise APIError(e.status, message, param) from None


def check_count(n: int, field: str) -> None:
    if n > MAX_INPUTS:
        raise APIError(400, f"`{field}` has {n} entries, past this server's limit of {MAX_INPUTS} per request: "
                            "split it into several requests", field)
