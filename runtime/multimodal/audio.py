"""Audio loading: WAV, FLAC, MP3 (any container FFmpeg reads) given as a path, bytes, base64, a
data URI or, when allowed, an http(s) URL, decoded with PyAV (one pip wheel with FFmpeg
bundled, the same the video tests use), mixed down to mono by averaging the channels (as
transformers' own load_audio does) and resampled to the processor's rate by FFmpeg's
libswresample (AudioResampler). A float array is taken as samples at the processor's rate.

Every failure is a ValueError naming the field (`field`, e.g. "audio_data[1]") and the fix."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .media import _bytes_of


def load_audio(x: Any, sampling_rate: int, max_samples: int, field: str = "audio_data",
               allow_urls: bool = False) -> np.ndarray:
    """-> (samples,) float32 mono samples at `sampling_rate`; more than `max_samples` (what the
    processor takes) is refused rather than cut."""
    if isinstance(x, np.ndarray) or (isinstance(x, list) and x and isinstance(x[0], float)):
        samples = np.asarray(x, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"{field}: an array of samples must be 1-D (mono at {sampling_rate} Hz), "
                             f"got shape {samples.shape}")
    else:
        src = _bytes_of(x, field, allow_urls)
        samples = _decode(src if isinstance(src, str) else io.BytesIO(src), sampling_rate, max_samples, field)
    if samples.size == 0:
        raise ValueError(f"{field}: the audio has no samples; send a clip of at least one sample")
    if samples.size > max_samples:
        raise ValueError(f"{field}: the audio is {samples.size / sampling_rate:.2f} s, longer than the "
                         f"{max_samples / sampling_rate:.2f} s the model's processor takes; cut it into clips")
    if not np.isfinite(samples).all():
        raise ValueError(f"{field}: the audio has NaN or infinite samples")
    return samples


def _decode(src: Any, sampling_rate: int, max_samples: int, field: str) -> np.ndarray:
    import av

    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(src, "r") as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise ValueError("no audio stream")
            # planar float, channels kept (averaged below), at the processor's rate
            resampler = av.AudioResampler(format="fltp", rate=sampling_rate)
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))  # (channels, n) -> (n,)
                    total += chunks[-1].size
                if total > max_samples:  # refused below; stop decoding a long file early
                    break
            else:
                for out in resampler.resample(None):  # the resampler's delayed tail
                    chunks.append(out.to_ndarray().mean(axis=0))
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{field}: not audio FFmpeg can decode ({str(e).splitlines()[0][:200] if str(e) else e!r}); "
                         "send WAV, FLAC or MP3") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
