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
        # beyond SGLang: supports_image / _video / _audio and their prompt text (image_token, ...)
        **(engine.modalities() if hasattr(engine, "modalities") else {}),
    }


def modalities(engine: Any) -> dict[str, Any]:
    """Whether the model takes images and video, and the prompt text standing for one of each."""
    media = engine._media  # (its config: a family's processor may add a token, SmolVLM's <video>)
    mm = media.mm if media else engine.model_config.multimodal
    return {"supports_image": bool(mm and mm.takes_images), "supports_video": bool(mm and mm.takes_video),
            "supports_audio": bool(mm and mm.takes_audio),
            "image_token": media.placeholder(engine.tokenizer, "image") if media else None,
            "video_token": media.placeholder(engine.tokenizer, "video") if media else None,
            "audio_token": media.placeholder(engine.tokenizer, "audio") if media else None}


def server_info(engine: Any) -> dict[str, Any]:
    """`get_server_info()`: the engine's configuration and its cache and queues now. Runs on the
    scheduler thread (Engine._call), so the counts are of one moment."""
    s, kv, cfg = engine._scheduler, engine._kv, engine.config
    return {
        "model_path": engine.model_path,
        "architecture": engine.model_config.architecture,
        "dtype": str(engine.dtype).removeprefix("torch."),
        "quantization": cfg.quantization,
        "weight_bytes": dict(engine.weight_bytes),
        "device": str(engine.device),
        "context_length": engine.context_length,
        "max_total_tokens": engine.num_slots,
        "kv_pool": type(engine._pool).__name__,  # the KV layout: MHAKVPool, MLAKVPool
        "kv_bytes_per_token": engine._pool.bytes_per_token(),  # every layer's share of one slot
        "max_running_requests": cfg.max_running_requests,
        "chunked_prefill_size": cfg.chunked_prefill_size,
        "schedule_policy": cfg.schedule_policy,
        "disable_radix_cache": cfg.disable_radix_cache,
        **modalities(engine),
        "vision_encoder_runs": s.runner.encoder_cache.runs,
        "encoder_cache_bytes": s.runner.encoder_cache.bytes,
        "cross_kv_runs": s.runner.cross_kv_cache.runs,  # images whose cross-attention KV was computed
        "tp_size": cfg.tp_size,
        "num_waiting_reqs": len(s.waiting),
        "num_running_reqs": len(s.live_requests()),
        "free_slots": kv.allocator.available(),
        "cached_tokens": kv.tree.total_size(),
        "evictable_tokens": kv.tree.evictable_size(),
        "held_slots": engine.num_slots - kv.allocator.available() - kv.tree.total_size(),
        **s.stats,
    }
