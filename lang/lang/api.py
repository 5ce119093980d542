"""``sglang.lang.api``: the constructors (``sgl.api``)."""

from __future__ import annotations

import sgl.api as _target
from sgl.lang._alias import forward

__getattr__, __dir__ = forward(_target, globals())
