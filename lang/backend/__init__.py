"""Backends: one class per target (in-process engine, our server, OpenAI-compatible)."""

from sgl.backend.base import BaseBackend
from sgl.backend.endpoint import RuntimeEndpoint
from sgl.backend.openai import OpenAI
from sgl.backend.runtime import Runtime

__all__ = ["BaseBackend", "OpenAI", "Runtime", "RuntimeEndpoint"]
