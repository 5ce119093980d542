"""The model's description that `/get_model_info` answers and `sgl.Runtime().endpoint` gives."""

from __future__ import annotations

from typing import Any


def model_info(engine: Any) -> dict[str, Any]:
    """SGLang's `{"model_path", "tokenizer_path", "is_generation"}`, and (beyond SGLang) what a
    client needs to render the model's own chat template and size its requests."""
    tok = engine.tokenizer
    return {
        "model_path": str(engine.model_path),
        "tokenizer_path": engine.config.tokenizer_path or str(engine.model_path),
        "is_generation": engine.task == "generate",
        "chat_template": getattr(tok, "chat_template", None),
        "bos_token": getattr(tok, "bos_token", None),
        "eos_token": getattr(tok, "eos_token", None),
        "add_bos_token": bool(getattr(tok, "add_bos_token", False)),
        "context_length": engine.context_length,
        "vocab_size": engine.model_config.vocab_size,
        # beyond SGLang: supports_image / supports_video and their prompt text (image_token, video_token)
        **(engine.modalities() if hasattr(engine, "modalities") else {}),
    }
