"""What media a client may make the server read: data (base64, data URIs, SGLang's "video:"
frames) always; files on the server's disk and http(s) URLs only with --allow-url-media (a
server that opens paths or fetches URLs for its callers must be told to)."""

from __future__ import annotations

import os
from typing import Any

from .errors import APIError

MAX_PATH_CHARS = 4096


def check_client_media(data: Any, field: str, allowed: bool) -> None:
    """Raises a 400 naming `field` (e.g. image_data.1) for a path or URL the server may not read."""
    if allowed or data is None:
        return
    if isinstance(data, list):
        for i, item in enumerate(data):
            check_client_media(item, f"{field}.{i}", allowed)
        return
    if isinstance(data, dict):  # {"data": ..., "num_frames": n}
        check_client_media(data.get("data", data.get("path")), f"{field}.data", allowed)
        return
    if not isinstance(data, str):
        return
    if data.startswith("file://") or (len(data) < MAX_PATH_CHARS and os.path.exists(data)):
        raise APIError(400, f"`{field}`: the server reads files only when started with --allow-url-media; "
                            "send the media as base64 or a data URI", field)
