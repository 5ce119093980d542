"""Images and video frames attached to a program state, with content hashes.

The hash is over the encoded bytes, so the engine's radix cache reuses an image's prefix only
for the same pixels.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LoadedImage:
    data: bytes  # encoded image file bytes (PNG/JPEG/...)
    content_hash: str

    @classmethod
    def from_bytes(cls, data: bytes) -> LoadedImage:
        return cls(data, hashlib.sha256(data).hexdigest())

    def base64(self) -> str:
        return base64.b64encode(self.data).decode()

    def data_uri(self) -> str:
        return f"data:image/jpeg;base64,{self.base64()}"

    def payload(self) -> str:
        """What an engine or server's `image_data` takes: base64 of the file."""
        return self.base64()


@dataclass(frozen=True)
class LoadedVideo:
    """Frames sampled from a clip, sent as SGLang's frontend sends `video()`: one `image_data`
    entry "video:" + base64 of the PNG frames concatenated, at one image token of the prompt."""

    frames: tuple[LoadedImage, ...]
    content_hash: str

    def payload(self) -> str:
        return "video:" + base64.b64encode(b"".join(f.data for f in self.frames)).decode()


def is_url(x: str) -> bool:
    return x.startswith(("http://", "https://", "data:"))


def load_image(source: Any) -> LoadedImage:
    """Bytes of an image from a path, URL, data URI, raw bytes or a PIL image."""
    if isinstance(source, (bytes, bytearray)):
        return LoadedImage.from_bytes(bytes(source))
    if isinstance(source, str):
        if source.startswith("data:"):
            return LoadedImage.from_bytes(base64.b64decode(source.split(",", 1)[1]))
        if is_url(source):
            with urllib.request.urlopen(source, timeout=30) as r:  # noqa: S310 (user-given URL)
                return LoadedImage.from_bytes(r.read())
        with open(source, "rb") as f:
            return LoadedImage.from_bytes(f.read())
    if hasattr(source, "save"):  # a PIL image
        buf = io.BytesIO()
        source.save(buf, format="PNG")
        return LoadedImage.from_bytes(buf.getvalue())
    raise TypeError(f"image source must be a path, URL, bytes or PIL image, got {type(source).__name__}")


def load_video(path: str, num_frames: int) -> LoadedVideo:
    """``num_frames`` frames sampled evenly over the clip at ``path``, as one video."""
    frames = tuple(load_video_frames(path, num_frames))
    return LoadedVideo(frames, hashlib.sha256(b"".join(f.content_hash.encode() for f in frames)).hexdigest())


def load_video_frames(path: str, num_frames: int) -> list[LoadedImage]:
    """``num_frames`` frames sampled evenly over the clip, as PNG images."""
    try:
        import decord  # type: ignore[import-not-found]
        from PIL import Image  # type: ignore[import-not-found]
    except ImportError as e:
        raise ImportError("video() needs the 'decord' and 'pillow' packages: pip install decord pillow") from e
    if not os.path.exists(path):
        raise FileNotFoundError(f"video file not found: {path}")
    reader = decord.VideoReader(path)
    total = len(reader)
    # evenly spaced over the clip, first and last frame included (the engine's rule for a video
    # file, so a program's frames are the ones the engine would pick)
    n = min(num_frames, total)
    idx = [round(i * (total - 1) / (n - 1)) if n > 1 else 0 for i in range(n)]
    frames = []
    for array in reader.get_batch(idx).asnumpy():
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        frames.append(LoadedImage.from_bytes(buf.getvalue()))
    return frames


def image_data(state: Any) -> dict[str, list[str]]:
    """The engine/server `image_data` of a program state's images and videos, in order ({}
    without any)."""
    items = getattr(state, "images_", None) or []
    return {"image_data": [item.payload() for _, item in items]} if items else {}
