"""Audio for the tests: tones written as real WAV, FLAC and MP3 files (PyAV's bundled FFmpeg
encoders: pcm_s16le, flac, libmp3lame), and the Qwen2-Audio and Phi-4-multimodal references on
tiny checkpoints."""

from __future__ import annotations

import numpy as np
import torch

CODECS = {"wav": "pcm_s16le", "flac": "flac", "mp3": "libmp3lame"}


def tone(seed: int, seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    """(channels, samples) float32: a sum of random sines plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) for _ in range(3))
    x = x + 0.01 * rng.standard_normal(t.size)
    return np.repeat(x[None], channels, axis=0).astype(np.float32)


def write_audio(path: str, samples: np.ndarray, rate: int = 16000) -> str:
    """(channels, samples) float32 in [-1, 1] -> a file of the format its suffix names."""
    import av

    kind = path.rsplit(".", 1)[1]
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(path, "w") as out:
        stream = out.add_stream(CODECS[kind], rate=rate, layout=layout)
        fmt = stream.codec_context.codec.audio_formats[0].name  # e.g. s16, s16p, fltp
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples if fmt.endswith("p") else samples.T.reshape(1, -1)
                                                                ).astype(np.float32), format="fltp" if fmt.endswith("p") else "flt",
                                           layout=layout)
        frame.rate = rate
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class Qwen2AudioReference:
    """transformers' Qwen2-Audio on the same checkpoint, fed by the folder's Qwen2AudioProcessor
    with the samples the engine decoded (load_audio: PyAV, resampled to 16 kHz)."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(folder)
        self.model = Qwen2AudioForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        self.audio_token = self.model.config.audio_token_id

    def inputs(self, prompt: str, clips: list):
        rate = self.processor.feature_extractor.sampling_rate
        return self.processor(text=prompt, audio=clips or None, sampling_rate=rate, return_tensors="pt")

    @torch.inference_mode()
    def prompt_logprobs(self, prompt: str, clips: list) -> tuple[list[int], torch.Tensor]:
        enc = self.inputs(prompt, clips)
        ids = enc["input_ids"][0].tolist()
        logits = self.model(**enc).logits[0].float()
        return ids, torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

    @torch.inference_mode()
    def greedy(self, prompt: str, clips: list, n: int = 16) -> list[int]:
        enc = self.inputs(prompt, clips)
        out = self.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[0, enc["input_ids"].shape[1]:].tolist()


class Phi4MMReference:
    """transformers' Phi4MultimodalForCausalLM on the same checkpoint. Its image processor needs
    torchvision, so the pixels are sgl's port (multimodal/phi4mm_images.py; its layout is tested
    against transformers' own rule) and each <|image|> is expanded to that image's count of
    image tokens, as Phi4MultimodalProcessor does; audio through the folder's
    Phi4MultimodalFeatureExtractor (clips of one prompt of equal length: transformers pads
    shorter clips and its encoder does not mask the padding)."""

    def __init__(self, folder: str) -> None:
        from sgl.runtime.config import ModelConfig
        from sgl.runtime.multimodal.phi4mm_images import Phi4MMImageProcessor
        from transformers import (
            AutoConfig,
            AutoTokenizer,
            Phi4MultimodalFeatureExtractor,
            Phi4MultimodalForCausalLM,
        )

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.image_processor = Phi4MMImageProcessor.from_folder(folder)
        self.feature_extractor = Phi4MultimodalFeatureExtractor.from_pretrained(folder)
        self.model = Phi4MultimodalForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.mm = ModelConfig.from_hf(AutoConfig.from_pretrained(folder)).multimodal
        self.image_token, self.audio_token = self.mm.image_token_id, self.mm.audio_token_id
        self.encoder_runs = 0

    def image_tokens(self, x: dict) -> int:
        from sgl.runtime.models.phi4mm import Phi4MultimodalForCausalLM as Ours

        return Ours.num_media_tokens(self.mm, "image", x)

    def inputs(self, prompt: str, images: list, clips: list = ()) -> dict:
        crop = self.image_processor.crop
        pix = [self.image_processor(im) for im in images]
        feats = [self.feature_extractor(c, sampling_rate=self.feature_extractor.sampling_rate, return_tensors="pt")
                 for c in clips]
        counts = {self.image_token: iter(self.image_tokens(x) for x in pix),
                  self.audio_token: iter(int(f["audio_embed_sizes"][0]) for f in feats)}
        ids: list[int] = []
        for t in self.tokenizer(prompt)["input_ids"]:
            ids += [t] * next(counts[t]) if t in counts else [t]
        enc: dict = {"input_ids": torch.tensor([ids])}
        if pix:  # crops padded to the most of any image (ones in the mask), as the processor pads them
            k = max(x["pixel_values"].shape[0] for x in pix)
            enc["image_pixel_values"] = torch.stack([torch.cat([x["pixel_values"], x["pixel_values"].new_zeros(
                k - x["pixel_values"].shape[0], *x["pixel_values"].shape[1:])]) for x in pix])
            enc["image_attention_mask"] = torch.stack([torch.cat([x["patch_mask"], x["patch_mask"].new_ones(
                k - x["patch_mask"].shape[0], *x["patch_mask"].shape[1:])]) for x in pix]).long()
            enc["image_sizes"] = torch.stack([x["grid"] * crop for x in pix])
        if feats:
            enc["audio_input_features"] = torch.cat([f["audio_input_features"] for f in feats])
            enc["audio_embed_sizes"] = torch.cat([f["audio_embed_sizes"] for f in feats])
        return enc

    @torch.inference_mode()
    def prompt_logprobs(self, prompt: str, images: list, clips: list = ()) -> tuple[list[int], torch.Tensor]:
        enc = self.inputs(prompt, images, clips)
        ids = enc["input_ids"][0].tolist()
        logits = self.model(**enc).logits[0].float()
        return ids, torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

    @torch.inference_mode()
    def greedy(self, prompt: str, images: list, clips: list = (), n: int = 16) -> list[int]:
        enc = self.inputs(prompt, images, clips)
        out = self.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[0, enc["input_ids"].shape[1]:].tolist()
