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
    # evenly spaced frame indices over [0, total)
    idx = [min(total - 1, int(i * total / num_frames)) for i in range(num_frames)]
    frames = []
    for array in reader.get_batch(idx).asnumpy():
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        frames.append(LoadedImage.from_bytes(buf.getvalue()))
    return frames
