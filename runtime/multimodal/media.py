"""Media loading: images (pillow) from a path, bytes, base64, a data URI, a PIL image or, when
allowed, an http(s) URL; video frames (decord) sampled evenly, or the PNG frames SGLang's
frontend sends as one "video:"-prefixed base64 string.

Every failure is a ValueError naming the field (`field`, e.g. "image_data[1]") and the fix."""

from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

# An image larger than this is refused from its header, before its pixels are decoded (a
# 40,000 x 40,000 PNG of a few KB would need 4.8 GB as RGB): 8192 x 8192.
MAX_PIXELS = 8192 * 8192
DEFAULT_NUM_FRAMES = 8
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
URL_TIMEOUT_S = 10.0  # per connect and per read
MAX_URL_BYTES = 256 << 20  # a fetched image or video


def _bytes_of(x: Any, field: str, allow_urls: bool) -> bytes | str:
    """The encoded bytes of an image or video given as bytes, a data URI, base64 or a URL; a
    path is returned as is (a str)."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if not isinstance(x, str) or not x:
        raise ValueError(f"{field}: expected a path, bytes, base64, a data URI or a PIL image, got {type(x).__name__}")
    if x.startswith(("http://", "https://")):
        if not allow_urls:
            raise ValueError(f"{field}: URLs are not fetched unless the server is started with --allow-url-media "
                             "(allow_url_media=True); send the media as base64 or a data URI")
        return _fetch(x, field)
    if x.startswith("data:"):
        head, sep, data = x.partition(",")
        if not sep or ";base64" not in head:
            raise ValueError(f"{field}: a data URI must look like data:image/png;base64,<data>")
        return _b64(data, field)
    if len(x) < 4096 and os.path.exists(x):
        return x
    return _b64(x, field)


def _fetch(url: str, field: str) -> bytes:
    """The body of an http(s) URL, read in pieces so that a body past MAX_URL_BYTES is refused
    before it fills memory (a Content-Length that says so is refused before any is read)."""
    import requests

    try:
        with requests.get(url, timeout=URL_TIMEOUT_S, stream=True) as reply:
            reply.raise_for_status()
            if int(reply.headers.get("Content-Length") or 0) > MAX_URL_BYTES:
                raise ValueError(f"{field}: {url!r} is {reply.headers['Content-Length']} bytes, more than "
                                 f"{MAX_URL_BYTES}; send a smaller file")
            body = bytearray()
            for piece in reply.iter_content(1 << 20):
                body += piece
                if len(body) > MAX_URL_BYTES:
                    raise ValueError(f"{field}: {url!r} is more than {MAX_URL_BYTES} bytes; send a smaller file")
            return bytes(body)
    except requests.RequestException as e:
        raise ValueError(f"{field}: could not fetch {url!r}: {e}") from None


def _b64(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field}: not a file that exists, a URL, a data URI or valid base64") from None


def load_image(x: Any, field: str = "image_data", allow_urls: bool = False) -> Image.Image:
    """-> an RGB PIL image whose pixels are decoded (so a truncated file fails here)."""
    if isinstance(x, Image.Image):
        img = x
    else:
        src = _bytes_of(x, field, allow_urls)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(src if isinstance(src, str) else io.BytesIO(src))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError(f"{field}: the image header declares more than {MAX_PIXELS} pixels; "
                             "resize it before sending") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{field}: not a readable image ({e})") from None
    w, h = img.size
    if w * h > MAX_PIXELS or w < 1 or h < 1:
        raise ValueError(f"{field}: the image is {w}x{h}, more than {MAX_PIXELS} pixels; resize it before sending")
    try:
        img.load()
        return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt pixel data
        raise ValueError(f"{field}: the image data is truncated or corrupt ({e})") from None


def sample_indices(total: int, num_frames: int) -> np.ndarray:
    """num_frames frame indices spread evenly over [0, total), first and last included."""
    return np.linspace(0, total - 1, min(num_frames, total)).round().astype(np.int64)


def load_video(x: Any, num_frames: int | None = None, field: str = "video_data",
               allow_urls: bool = False) -> np.ndarray:
    """-> (frames, height, width, 3) uint8 RGB frames sampled evenly over the clip."""
    return load_clip(x, num_frames, field, allow_urls)[0]


def load_clip(x: Any, num_frames: int | None = None, field: str = "video_data",
              allow_urls: bool = False, sample: Callable[[int, int], np.ndarray] = sample_indices,
              ) -> tuple[np.ndarray, float | None]:
    """-> ((frames, height, width, 3) uint8 RGB frames sampled evenly over the clip, the
    sampled frames per second of the clip's time; None where frames were given as images).

    `x`: a path or bytes of a video file (read with decord), a list of images (frames given
    already), or SGLang's "video:" + base64 of concatenated PNG frames. `sample(total,
    num_frames)`: the indices of the frames kept (a family's own rule: InternVL's)."""
    n = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{field}: num_frames must be a positive integer, got {num_frames!r}")
    if isinstance(x, (list, tuple)):
        frames = [np.asarray(load_image(f, f"{field}[{i}]", allow_urls)) for i, f in enumerate(x)]
        return _stack(frames, sample(len(frames), n), field), None
    if isinstance(x, str) and x.startswith("video:"):
        blob = _b64(x[len("video:"):], field)
        parts = [PNG_MAGIC + p for p in blob.split(PNG_MAGIC)[1:]]
        if not parts:
            raise ValueError(f"{field}: a 'video:' payload must be base64 of concatenated PNG frames")
        frames = [np.asarray(load_image(p, f"{field} frame {i}")) for i, p in enumerate(parts)]
        return _stack(frames, sample(len(frames), n), field), None
    src = _bytes_of(x, field, allow_urls)
    import decord

    try:
        reader = decord.VideoReader(src if isinstance(src, str) else io.BytesIO(src), ctx=decord.cpu(0))
        total = len(reader)
        if total == 0:
            raise ValueError("no frames")
        idx = sample(total, n)
        frames = reader.get_batch(list(idx)).asnumpy()
        fps = float(reader.get_avg_fps())
    except (decord.DECORDError, RuntimeError, ValueError) as e:
        raise ValueError(f"{field}: not a video decord can read ({str(e).splitlines()[0][:200]})") from None
    h, w = frames.shape[1:3]
    if w * h > MAX_PIXELS:
        raise ValueError(f"{field}: frames of {w}x{h} are more than {MAX_PIXELS} pixels")
    return frames, (fps * len(idx) / total if fps > 0 else None)


def _stack(frames: list[np.ndarray], idx: np.ndarray, field: str) -> np.ndarray:
    picked = [frames[i] for i in idx]
    if len({f.shape for f in picked}) != 1:
        raise ValueError(f"{field}: video frames must all have the same size")
    return np.stack(picked)


def encode_png_frames(frames: np.ndarray) -> str:
    """SGLang's frontend encoding of sampled frames: "video:" + base64 of concatenated PNGs."""
    out = io.BytesIO()
    for f in frames:
        Image.fromarray(np.asarray(f, dtype=np.uint8)).save(out, format="PNG")
    return "video:" + base64.b64encode(out.getvalue()).decode()
