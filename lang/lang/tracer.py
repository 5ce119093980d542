"""``sglang.lang.tracer``: program tracing (``sgl.tracer``)."""

from __future__ import annotations

import sgl.tracer as _target
from sgl.lang._alias import forward

__getattr__, __dir__ = forward(_target, globals())
