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


QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]  # ids 49153..49156
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"


def save_tiny_qwen2_vl(folder: str, tokenizer_folder: str, version: str = "2", seed: int = 0) -> str:
    """A random Qwen2-VL (version "2") or Qwen2.5-VL ("2.5": windows of 2x2 merge blocks, the
    last of its two blocks full attention) of tiny shape (4 px patches, 2x2 merge, 2-frame
    temporal patches), saved with Qwen2-VL's PIL image processor (pixel bounds 256..4096) and
    the default model's tokenizer plus Qwen's vision tokens. (Qwen2VLProcessor itself needs
    torchvision for its video processor, so the folder holds the image processor and the
    tokenizer, as older Qwen2-VL checkpoints do.)"""
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = tokenizer_with_image_token(tokenizer_folder)
    tok.add_tokens(QWEN_TOKENS, special_tokens=True)
    ids = tok.convert_tokens_to_ids(QWEN_TOKENS)
    text = dict(vocab_size=TEXT_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2,
                bos_token_id=1, eos_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                  "mrope_section": [2, 3, 3]})
    shape = dict(depth=2, num_heads=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                 initializer_range=0.2)
    if version == "2":
        name, vision = "Qwen2VL", dict(shape, embed_dim=32, hidden_size=64, mlp_ratio=2)
    else:
        name, vision = "Qwen2_5_VL", dict(shape, hidden_size=32, intermediate_size=64, out_hidden_size=64,
                                          window_size=16, fullatt_block_indexes=[1], tokens_per_second=4)
    config = getattr(transformers, f"{name}Config")(
        text_config=text, vision_config=vision, vision_start_token_id=ids[0], vision_end_token_id=ids[1],
        image_token_id=ids[2], video_token_id=ids[3], architectures=[f"{name}ForConditionalGeneration"])
    torch.manual_seed(seed)
    getattr(transformers, f"{name}ForConditionalGeneration")(config).eval().save_pretrained(folder)
    Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                             size={"shortest_edge": 256, "longest_edge": 4096}).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


class Qwen2VLReference:
    """transformers' Qwen2-VL / Qwen2.5-VL on the same checkpoint: images through the folder's
    image processor, the prompt expanded as Qwen2VLProcessor does (grid / merge^2 pads per
    item); video pixels are given (the video processor needs torchvision)."""

    def __init__(self, folder: str) -> None:
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.image_processor = AutoImageProcessor.from_pretrained(folder, use_fast=False)
        cls = getattr(transformers, AutoConfig.from_pretrained(folder).architectures[0])
        self.model = cls.from_pretrained(folder, dtype=torch.float32).eval()
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
