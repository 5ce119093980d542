"""Idefics3 (`Idefics3ForConditionalGeneration`) and SmolVLM (`SmolVLMForConditionalGeneration`):
the image processor splits an image into max_image_size tiles (rows x cols) plus the whole
image resized to one tile (the global image); a SigLIP-like tower (layers/vision_siglip.py,
positions fitted to a tile's patch grid) encodes each tile, its patch grid is pixel-shuffled by
scale_factor (2: 2x2 patches one token) and one linear maps it into a Llama decoder.

# differs from LLaVA: an image's item is the text Idefics3Processor writes for it, e.g. for 2x2
# tiles "<fake_token_around_image><row_1_col_1>" + <image> * tile tokens ... "\\n" after each
# row, then "\\n<fake_token_around_image><global-img>" + <image> * tile tokens +
# "<fake_token_around_image>" (`media_text`); the tags are text tokens of the item and the
# <image> positions take the tiles' rows in order (`with_text_rows`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..layers.linear import Linear
from ..layers.vision_intern import pixel_shuffle
from ..layers.vision_siglip import Idefics3VisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import QKV_PACKED
from .llava import text_model_class
from .vision_language import VisionLanguageModel

PRESAMPLED_FPS = 24.0  # SmolVLMProcessor's clock for frames given without a video's timing
FAKE, IMAGE, GLOBAL = "<fake_token_around_image>", "<image>", "<global-img>"  # the processor's defaults


def image_text(rows: int, cols: int, tokens: int) -> str:
    """Idefics3Processor's (and SmolVLM's) text for an image split into rows x cols tiles (0, 0:
    not split) of `tokens` image tokens each, then its global image."""
    tiles = "".join("".join(f"{FAKE}<row_{r + 1}_col_{c + 1}>" + IMAGE * tokens for c in range(cols)) + "\n"
                    for r in range(rows))
    return tiles + ("\n" if rows else "") + FAKE + GLOBAL + IMAGE * tokens + FAKE


class Idefics3ForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        if not mm.downsample_ratio:
            raise ValueError(f"{config.architecture}: config.json needs scale_factor")
        text_cls = text_model_class(config)
        self.packed_modules = {**getattr(text_cls, "packed_modules", {}), **QKV_PACKED}
        self.renamed_weights = [(r"^model\.vision_model\.", "vision_model."),
                                (r"^model\.connector\.modality_projection\.proj\.", "connector."),
                                (r"^model\.text_model\.", "language_model.model."),
                                (r"^lm_head\.", "language_model.lm_head."), *getattr(text_cls, "renamed_weights", [])]
        self.language_model = text_cls(config, max_length)
        self.vision_model = Idefics3VisionTower(mm.tower)
        width = round(mm.tower.hidden_size / mm.downsample_ratio**2)  # the shuffled patch width
        self.connector = Linear(width, config.hidden_size, bias=False)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def image_inputs(image_processor: Any, image: Any, count: int) -> dict[str, torch.Tensor]:
        """pixel_values (tiles, 3, tile, tile): the row-major tiles, the global image last, and
        grid (2,): rows, cols (0, 0: one tile, not split)."""
        out = image_processor(images=[image], return_row_col_info=True, return_tensors="pt")
        mask = out.get("pixel_attention_mask")
        if mask is not None and not bool(mask.all()):  # one image's tiles are all one size
            raise ValueError("image_data: the image processor padded a tile; tiles of one size are supported")
        return {"pixel_values": out["pixel_values"][0],
                "grid": torch.tensor([out["rows"][0][0], out["cols"][0][0]], dtype=torch.int64)}

    @staticmethod
    def tile_tokens(mm: MultimodalConfig, pixels: torch.Tensor) -> int:
        side = pixels.shape[-1] // mm.tower.patch_size
        return round(side * mm.downsample_ratio) ** 2

    @classmethod
    def media_text(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> str:
        rows, cols = inputs["grid"].tolist()
        return image_text(rows, cols, cls.tile_tokens(mm, inputs["pixel_values"]))

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: Idefics3ForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) per item: each tile's shuffled and projected patches in tile
        order (the global image last) at its <image> positions, the tags' token embeddings
        between them; all tiles of all items in one tower call."""
        device = self.vision_model.embeddings.patch_embedding.weight.device
        tiles = [it.inputs["pixel_values"] for it in items]
        x = self.vision_model(torch.cat(tiles).to(device))  # (tiles, patches, vision hidden), post-normed
        side = round(x.shape[1] ** 0.5)
        x = pixel_shuffle(x.reshape(x.shape[0], side, side, -1), self.mm.downsample_ratio)
        x = self.connector(x.reshape(x.shape[0], -1, x.shape[-1]))  # (tiles, tokens a tile, text hidden)
        feats = x.split([t.shape[0] for t in tiles])
        return [self.with_text_rows(it, f.reshape(-1, f.shape[-1])) for it, f in zip(items, feats)]


class SmolVLMForConditionalGeneration(Idefics3ForConditionalGeneration):
    """SmolVLM (1 and 2): Idefics3's model and image layout.

    # differs from Idefics3: a prompt's <video> (a tokenizer token; the config names none)
    # becomes SmolVLMProcessor's text: an intro naming the frame count and the duration, then per
    # frame "\nFrame from MM:SS:" and the frame as one unsplit image, then "\n\n"; that text
    # is tokenized with the prompt's text around <video>, as the processor tokenizes one string."""

    modalities = ("image", "video")
    prompt_video_token = "<video>"
    text_joins_prompt = ("video",)  # its text is tokenized with the prompt's text around <video>

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: Any, frames: np.ndarray,
                     fps: float | None) -> dict[str, torch.Tensor]:
        """pixel_values (frames, 3, tile, tile): each frame resized as the video processor does
        (longest edge to size, then the tile square: the image processor's unsplit rule);
        frame_seconds (frames,) on the sampled clip's clock (24 fps for frames given as
        images, the processor's default); duration (1,): the clip's seconds (-1: unknown)."""
        from PIL import Image

        pixels = [image_processor(images=[Image.fromarray(f)], do_image_splitting=False, return_tensors="pt")
                  ["pixel_values"][0] for f in frames]
        rate = fps or PRESAMPLED_FPS
        return {"pixel_values": torch.cat(pixels), "duration": torch.tensor([len(frames) / fps if fps else -1.0]),
                "frame_seconds": torch.arange(len(frames), dtype=torch.float64) / rate}

    @staticmethod
    def split_video(mm: MultimodalConfig, inputs: dict[str, torch.Tensor]) -> list[str | dict[str, torch.Tensor]]:
        """The video's prompt parts: text, one unsplit image item per frame, text (adjacent text
        joined, so it tokenizes as the processor's one string does)."""
        from num2words import num2words

        seconds = inputs["frame_seconds"].tolist()
        duration = inputs["duration"].item()
        total = int(duration) if duration >= 0 else int(seconds[-1])
        parts: list[str | dict[str, torch.Tensor]] = [
            f"You are provided the following series of {num2words(len(seconds))} frames from a "
            f"{timedelta(seconds=total)} [H:MM:SS] video.\n"]
        for i, sec in enumerate(seconds):
            parts[-1] += f"\nFrame from {int(sec // 60):02d}:{int(sec % 60):02d}:"
            parts += [{"pixel_values": inputs["pixel_values"][i : i + 1], "grid": torch.zeros(2, dtype=torch.int64)},
                      ""]
        parts[-1] += "\n\n"
        return parts
