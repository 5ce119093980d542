"""Tiny vision-language checkpoints saved with a real (small) processor, images and videos
made in the test, and transformers references on them."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import torch

IMAGE_TOKEN = "<image>"
TEXT_VOCAB = 49160  # the default model's 49152 tokens, <image> (49152), padding


def tokenizer_with_image_token(tokenizer_folder: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    return tok


def tiny_llava_config(strategy: str = "default", feature_layer=-2):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32, initializer_range=0.2)
    text = LlamaConfig(vocab_size=TEXT_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=49152,
                       vision_feature_select_strategy=strategy, vision_feature_layer=feature_layer,
                       architectures=["LlavaForConditionalGeneration"])


def save_tiny_llava(folder: str, tokenizer_folder: str, seed: int = 0, **config_kwargs) -> str:
    """A random LLaVA 1.5 of tiny shape, saved with a CLIP image processor (32 px crops) and the
    default model's tokenizer plus <image>, as llava-hf checkpoints ship them."""
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    config = tiny_llava_config(**config_kwargs)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tok = tokenizer_with_image_token(tokenizer_folder)
    LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=8, image_token=IMAGE_TOKEN,
                   vision_feature_select_strategy=config.vision_feature_select_strategy,
                   num_additional_image_tokens=1).save_pretrained(folder)
    for name in os.listdir(tokenizer_folder):  # the chat template
        if name.endswith(".jinja") and not os.path.exists(os.path.join(folder, name)):
            shutil.copy(os.path.join(tokenizer_folder, name), folder)
    return folder


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
    """transformers' LLaVA on the same checkpoint, fed by the folder's own processor."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(folder)
        self.model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
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
