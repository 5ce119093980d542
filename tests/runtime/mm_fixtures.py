"""Tiny vision-language checkpoints (built by sgl.runtime.multimodal.random_checkpoints, saved
with a real small processor), images and videos made in the test, and transformers references
on them."""

from __future__ import annotations

import io

import numpy as np
import sgl
import torch
from sgl.runtime.multimodal.random_checkpoints import (
    IMAGE_TOKEN,
    QWEN_IMAGE,
    QWEN_VIDEO,
    save_random_llava,
    save_random_qwen2_vl,
)

__all__ = ["image_qa", "video_qa", "IMAGE_TOKEN", "QWEN_IMAGE", "QWEN_VIDEO", "LlavaReference", "assert_qwen_parity", "Qwen2VLReference", "png_bytes",
           "png_header", "random_image", "save_tiny_llava", "save_tiny_qwen2_vl", "write_video", "VIDEO_FRAMES"]
save_tiny_llava, save_tiny_qwen2_vl = save_random_llava, save_random_qwen2_vl  # the tests' names


def random_image(seed: int, size=(40, 56)):
    """A PIL image of random pixels (height, width)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def png_bytes(img) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def write_video(path: str, frames: int = 12, size=(48, 64), seed: int = 0) -> str:
    """An mp4 (H.264 via PyAV's bundled FFmpeg: a pip wheel, in-process, no ffmpeg binary) of
    smooth random frames, readable by decord."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (*size, 3)).astype(np.float32)
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.height, stream.width, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = np.clip(base + 10 * i, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (a decompression bomb's first bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class LlavaReference:
    """transformers' LLaVA (1.5 or NeXT) on the same checkpoint, fed by the folder's own processor."""

    def __init__(self, folder: str) -> None:
        import transformers
        from transformers import AutoConfig, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(folder, use_fast=False)
        cls = getattr(transformers, AutoConfig.from_pretrained(folder).architectures[0])  # LLaVA or LLaVA-NeXT
        self.model = cls.from_pretrained(folder, dtype=torch.float32).eval()
        self.image_token = self.model.config.image_token_id
        self.encoder_runs = 0
        self.model.model.vision_tower.register_forward_hook(lambda *a: self._count())

    def _count(self) -> None:
        self.encoder_runs += 1

    def inputs(self, prompt: str, images: list):
        return self.processor(text=prompt, images=images or None, return_tensors="pt")

    @torch.inference_mode()
    def prompt_logprobs(self, prompt: str, images: list) -> tuple[list[int], torch.Tensor]:
        """(expanded ids, (len - 1,) logprob of each token given the ones before)."""
        enc = self.inputs(prompt, images)
        ids = enc["input_ids"][0].tolist()
        logits = self.model(**enc).logits[0].float()
        return ids, torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

    @torch.inference_mode()
    def greedy(self, prompt: str, images: list, n: int = 16) -> list[int]:
        enc = self.inputs(prompt, images)
        out = self.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[0, enc["input_ids"].shape[1]:].tolist()


def hf_parts(folder: str) -> tuple:
    """(tokenizer, PIL image processor, float32 model of the folder's architecture)."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    cls = getattr(transformers, AutoConfig.from_pretrained(folder).architectures[0])
    return (AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder, use_fast=False),
            cls.from_pretrained(folder, dtype=torch.float32).eval())


class Qwen2VLReference:
    """transformers' Qwen2-VL / Qwen2.5-VL on the same checkpoint: images through the folder's
    image processor, the prompt expanded as Qwen2VLProcessor does (grid / merge^2 pads per
    item); video pixels are given (the video processor needs torchvision)."""

    def __init__(self, folder: str) -> None:
        self.tokenizer, self.image_processor, self.model = hf_parts(folder)
        c = self.model.config
        self.image_token, self.video_token = c.image_token_id, c.video_token_id
        self.merge = c.vision_config.spatial_merge_size**2

    def inputs(self, prompt: str, images: list, videos: list) -> dict:
        """videos: dicts with pixel_values_videos, video_grid_thw (and 2.5's
        second_per_grid_ts), one video each."""
        enc: dict = {}
        if images:
            enc.update(self.image_processor(images=images, return_tensors="pt"))
        if videos:
            enc["pixel_values_videos"] = torch.cat([v["pixel_values_videos"] for v in videos])
            enc["video_grid_thw"] = torch.cat([v["video_grid_thw"] for v in videos])
            if "second_per_grid_ts" in videos[0]:
                enc["second_per_grid_ts"] = torch.cat([v["second_per_grid_ts"] for v in videos])
        counts = {self.image_token: iter([int(g.prod()) // self.merge for g in enc.get("image_grid_thw", [])]),
                  self.video_token: iter([int(g.prod()) // self.merge for g in enc.get("video_grid_thw", [])])}
        ids: list[int] = []
        for t in self.tokenizer(prompt)["input_ids"]:
            ids += [t] * next(counts[t]) if t in counts else [t]
        input_ids = torch.tensor([ids])
        kinds = (input_ids == self.image_token).int() + 2 * (input_ids == self.video_token).int()
        return {**enc, "input_ids": input_ids, "mm_token_type_ids": kinds}

    @torch.inference_mode()
    def prompt_logprobs(self, prompt: str, images: list, videos: list = ()) -> tuple[list[int], torch.Tensor]:
        enc = self.inputs(prompt, images, list(videos))
        ids = enc["input_ids"][0].tolist()
        logits = self.model(**enc).logits[0].float()
        return ids, torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

    @torch.inference_mode()
    def greedy(self, prompt: str, images: list, videos: list = (), n: int = 16) -> list[int]:
        enc = self.inputs(prompt, images, list(videos))
        out = self.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[0, enc["input_ids"].shape[1]:].tolist()


def assert_qwen_parity(result: dict, reference: Qwen2VLReference, prompt: str, images: list, videos: list,
                       start: int = 0) -> None:
    """An engine result (prompt logprobs from `start`, 16 greedy tokens) equals the reference's:
    the same expanded prompt length, text-token logprobs within 1e-4, the same tokens."""
    ids, expected = reference.prompt_logprobs(prompt, images, videos)
    meta = result["meta_info"]
    assert meta["prompt_tokens"] == len(ids)
    ours = torch.tensor([row[0] for row in meta["input_token_logprobs"][1:]])
    assert len(ours) == len(ids) - 1 - start
    text = torch.tensor([t not in (reference.image_token, reference.video_token) for t in ids[start + 1:]])
    assert (ours[text] - expected[start:][text]).abs().max() < 1e-4
    assert result["output_ids"] == reference.greedy(prompt, images, videos)


# ---- programs the language and server tests run ---------------------------------------------
VIDEO_FRAMES = 4


@sgl.function
def image_qa(s, image, question):
    s += sgl.user(sgl.image(image) + question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=8))


@sgl.function
def video_qa(s, path, question):
    s += sgl.user(sgl.video(path, VIDEO_FRAMES) + question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=8))
