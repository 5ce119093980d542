"""Process-wide settings of the language (``sgl.global_config``).

NOTE: this object is mutable on purpose: SGLang programs set ``global_config.default_backend``
(through ``set_default_backend``) and ``verbosity`` at run time, and sgl keeps that contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class GlobalConfig:
    # 0: quiet; 2: print every program's text when it ends
    verbosity: int = 0
    # the backend used when a run names none; ``None`` until set or first used
    default_backend: Any = None
    # run_batch traces the program to find its constant prefix and caches it first
    enable_precache_with_tracing: bool = True
    # a traced prefix shorter than this (characters) is not worth a separate prefill
    precache_min_chars: int = 64
    # join("concate_and_append") asks the backend to join KV caches when it can
    enable_parallel_encoding: bool = True
    skip_special_tokens_in_output: bool = True
    spaces_between_special_tokens_in_out: bool = True


global_config = GlobalConfig()
