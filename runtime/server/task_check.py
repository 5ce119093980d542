"""Whether a route fits the model being served: a pooling model answers no generation route,
and a generation model no pooling route, each with a 400 naming the routes to use."""

from __future__ import annotations

from typing import Any

from .errors import APIError

POOLING_ROUTES = "/v1/embeddings, /encode, /classify, /v1/rerank or /v1/score"


def require_pooling(engine: Any, route: str, classifier: bool = False) -> None:
    """400 unless the engine serves a pooling model (a classifier when `classifier`)."""
    arch = engine.model_config.architecture
    if engine.task == "generate":
        raise APIError(400, f"{route}: {arch} generates text and serves no embeddings or scores: start the "
                            "server with an embedding, classification or reward model (or --is-embedding on a "
                            "decoder), or use /generate, /v1/completions, /v1/chat/completions", "model")
    if classifier and engine.task != "classify":
        raise APIError(400, f"{route}: {arch} is an embedding model; it gives vectors, not label scores: "
                            "use /v1/embeddings or /encode", "model")


def require_generation(engine: Any, route: str) -> None:
    """400 on a generation route when the engine serves a pooling model."""
    if engine.task != "generate":
        raise APIError(400, f"{route}: {engine.model_config.architecture} is a {engine.task} model and "
                            f"generates no text: use {POOLING_ROUTES}", "model")
