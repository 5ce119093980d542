"""``sglang.lang.backend.base_backend``: ``BaseBackend`` (``sgl.backend.base``)."""

from __future__ import annotations

import sgl.backend.base as _target
from sgl.backend.base import BaseBackend
from sgl.lang._alias import forward

__all__ = ["BaseBackend"]

__getattr__, __dir__ = forward(_target, globals())
