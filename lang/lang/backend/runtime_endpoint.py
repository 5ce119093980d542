"""``sglang.lang.backend.runtime_endpoint``: ``RuntimeEndpoint`` (``sgl.backend.endpoint``) and
``Runtime`` (in SGLang a server process; ours the in-process engine, ``sgl.backend.runtime``)."""

from __future__ import annotations

import sgl.backend.endpoint as _target
from sgl.backend.endpoint import RuntimeEndpoint
from sgl.backend.runtime import Runtime
from sgl.lang._alias import forward

__all__ = ["Runtime", "RuntimeEndpoint"]

__getattr__, __dir__ = forward(_target, globals())
