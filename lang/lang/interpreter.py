"""``sglang.lang.interpreter``: ``ProgramState`` and the runners (``sgl.state``,
``sgl.executor``, ``sgl.interpreter``)."""

from __future__ import annotations

import sgl.interpreter as _target
from sgl.executor import StreamExecutor
from sgl.interpreter import cache_program, run_program, run_program_batch
from sgl.lang._alias import forward
from sgl.state import ProgramState, ProgramStateGroup

__all__ = ["ProgramState", "ProgramStateGroup", "StreamExecutor", "cache_program", "run_program",
           "run_program_batch"]

__getattr__, __dir__ = forward(_target, globals())
