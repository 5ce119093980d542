"""Chat content parts with media (OpenAI's `image_url` and `input_audio`, and `video_url` and
`audio_url` as vLLM and SGLang take them): each part becomes the model's own placeholder
text (e.g. "<image>", Qwen2-VL's "<|vision_start|><|image_pad|><|vision_end|>") where it
stands in the message, and its URL (or data) joins the request's images, videos or audio in
order. Text parts are joined with newlines."""

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
    audios: list[str] = field(default_factory=list)


# a content part's type -> the modality it carries
PART_MODALITY = {"image_url": "image", "video_url": "video", "input_audio": "audio", "audio_url": "audio"}


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
        if part.type not in PART_MODALITY:
            raise APIError(400, f"`{where}`: {part.type} parts are not supported; send text, image_url, video_url, "
                                "input_audio or audio_url", where)
        modality = PART_MODALITY[part.type]
        url = getattr(part, part.type)
        if url is None:
            shape = '{"data": base64, "format": "wav"}' if part.type == "input_audio" else '{"url": ...}'
            raise APIError(400, f"`{where}.{part.type}`: a {part.type} part needs {shape}", f"{where}.{part.type}")
        token = engine.modalities()[f"{modality}_token"] if getattr(engine, "is_multimodal", False) else None
        if token is None:
            raise APIError(400, f"`{where}`: {part.type} parts need a model that takes {modality}; this server's "
                                f"model does not", where)
        # input_audio's data: base64 of the file (its format is read from the bytes themselves)
        value, key = (url.data, "data") if part.type == "input_audio" else (url.url, "url")
        check_client_media(value, f"{where}.{part.type}.{key}", engine.config.allow_url_media)
        {"image": media.images, "video": media.videos, "audio": media.audios}[modality].append(value)
        texts.append(token)
    return "\n".join(texts)
