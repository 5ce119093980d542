"""Module aliases: each ``sgl.lang.*`` module names the objects of one of our modules.

SGLang programs import from ``sglang.lang.<module>``; ours live one level up (``sgl.<module>``).
An alias module imports the names SGLang documents explicitly (so they are the same objects) and
forwards every other attribute to our module, so ``from sgl.lang.ir import X`` works for any X
that ``sgl.ir`` has.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any


def forward(target: ModuleType, namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of an alias module whose globals are ``namespace``."""

    def __getattr__(name: str) -> Any:
        try:
            return getattr(target, name)
        except AttributeError:
            raise AttributeError(
                f"module {namespace['__name__']!r} (an alias of {target.__name__!r}) has no attribute {name!r}"
            ) from None

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(dir(target)))

    return __getattr__, __dir__
