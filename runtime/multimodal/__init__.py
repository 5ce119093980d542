"""Images and video: loading (media.py), the model's processor and placeholder expansion
(processor.py), content-hashed items (items.py), the encoder-output cache (encoder_cache.py)
and the runner's step that writes media embeddings into a batch (embed.py)."""

from __future__ import annotations

from .config import MultimodalConfig, multimodal_config
from .encoder_cache import EncoderCache
from .items import MediaItem, MediaSpan, MultimodalInputs
from .towers import VisionTowerConfig

__all__ = ["EncoderCache", "MediaItem", "MediaSpan", "MultimodalConfig", "MultimodalInputs", "VisionTowerConfig",
           "multimodal_config"]
