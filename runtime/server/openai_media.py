"""Chat content parts with media (OpenAI's `image_url`, and `video_url` as vLLM and SGLang
take it): each part becomes the model's own placeholder text (e.g. "<image>", Qwen2-VL's
"<|vision_start|><|image_pad|><|vision_end|>") where it stands in the message, and its URL
joins the request's images or videos in order. Text parts are joined with newlines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import APIError
from .media_guard import check_client_media
from .openai_protocol import ChatMessage


@dataclass
class ChatMedia:
    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)


def message_text(m: ChatMessage, i: int, engine: Any, media: ChatMedia) -> str:
    """The message's text with placeholders for its media, which are added to `media`."""
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    texts = []
    for j, part in enumerate(m.content):
        where = f"messages.{i}.content.{j}"
        if part.type == "text":
            texts.append(part.text or "")
            continue
        if part.type not in ("image_url", "video_url"):
            raise APIError(400, f"`{where}`: {part.type} parts are not supported; send text, image_url or video_url",
                           where)
        modality = "image" if part.type == "image_url" else "video"
        url = part.image_url if modality == "image" else part.video_url
        if url is None:
            raise APIError(400, f"`{where}.{part.type}`: a {part.type} part needs {{\"url\": ...}}", f"{where}.{part.type}")
        token = engine.modalities()[f"{modality}_token"] if getattr(engine, "is_multimodal", False) else None
        if token is None:
            raise APIError(400, f"`{where}`: {part.type} parts need a model that takes {modality}s; this server's "
                                f"model does not", where)
        check_client_media(url.url, f"{where}.{part.type}.url", engine.config.allow_url_media)
        (media.images if modality == "image" else media.videos).append(url.url)
        texts.append(token)
    return "\n".join(texts)
