"""The embedded inference engine: `from sgl.runtime import Engine`."""

from .config import EngineConfig, ModelConfig
from .engine import Engine

__all__ = ["Engine", "EngineConfig", "ModelConfig"]
