"""``sglang.lang.backend.openai``: ``OpenAI`` (``sgl.backend.openai``)."""

from __future__ import annotations

import sgl.backend.openai as _target
from sgl.backend.openai import OpenAI
from sgl.lang._alias import forward

__all__ = ["OpenAI"]

__getattr__, __dir__ = forward(_target, globals())
