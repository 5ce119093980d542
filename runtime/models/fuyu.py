"""Fuyu (`FuyuForCausalLM`): no vision tower; an image's patches (patch_size squares, flattened
as transformers' patchify_image does) go through one linear layer (`vision_embed_tokens`)
straight into a Persimmon decoder.

An image at the prompt's |SPEAKER| token becomes, as FuyuProcessor lays it out, rows of
|SPEAKER| * columns + |NEWLINE| (the patch rows of the image cropped to whole patches), then
<s>. The newlines are text tokens among the image's rows (`media_text_ids`); <s> follows the
item (`image_wrap`; a tokenizer's BOS before the image goes: `arrange_prompt`).
FuyuImageProcessor's PIL backend does the resizing and padding (no torchvision); its own
patchify_image cuts the patches.

# differs from LLaVA: an image's rows are linear projections of its pixels, and an image
# takes as many rows as its size gives (up to the processor's size)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..layers.linear import Linear
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from ..multimodal.processor import media_token_ids
from .gpt_neox import PersimmonForCausalLM
from .vision_language import VisionLanguageModel, rename_text_weights

# transformers 5's layout (model.language_model, model.vision_embed_tokens, lm_head) and the
# hub's (language_model.model, language_model.lm_head, vision_embed_tokens)
_PARTS = [(re.compile(r"^model\.language_model\."), "language_model.model."),
          (re.compile(r"^model\.vision_embed_tokens\."), "vision_embed_tokens."),
          (re.compile(r"^lm_head\."), "language_model.lm_head.")]


class FuyuForCausalLM(VisionLanguageModel):
    modalities = ("image",)
    media_tokens = ("|NEWLINE|",)

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        if getattr(config.hf, "model_type", "persimmon") != "persimmon":
            raise ValueError(f"{config.architecture}: text_config.model_type {config.hf.model_type!r} is not "
                             "supported; Fuyu's is persimmon")
        self.packed_modules = dict(PersimmonForCausalLM.packed_modules)
        self.language_model = PersimmonForCausalLM(config, max_length)
        p = mm.tower.patch_size
        self.vision_embed_tokens = Linear(p * p * mm.tower.num_channels, config.hidden_size, bias=True)

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        def parts() -> Iterator[tuple[str, torch.Tensor]]:
            for name, t in weights:
                for pattern, repl in _PARTS:
                    name = pattern.sub(repl, name)
                yield name, t

        return rename_text_weights(parts(), PersimmonForCausalLM)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def image_wrap(mm: MultimodalConfig, folder: str) -> tuple[list[int], list[int]]:
        """<s> after each image's rows (FuyuProcessor's replace_image_token)."""
        return [], [media_token_ids(folder, ("<s>",))["<s>"]]

    @staticmethod
    def arrange_prompt(ids: list[int], image_token: int | None, bos: int | None) -> list[int]:
        """A tokenizer's BOS before the first image goes: FuyuProcessor puts <s> after the image
        (image_wrap), none before it."""
        if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == image_token:
            return ids[1:]
        return ids

    @staticmethod
    def image_inputs(image_processor: Any, image: Any, count: int) -> dict[str, torch.Tensor]:
        """One image -> pixel_values (1, patches, 3 * patch^2) of the padded image cropped to
        whole patches of its resized size, and grid (1, 2): its (rows, columns) of patches."""
        out = image_processor(images=[image])
        pixels = np.asarray(out["images"][0][0])  # (3, height, width), padded to the processor's size
        ph, pw = image_processor.patch_size["height"], image_processor.patch_size["width"]
        h = min(pixels.shape[-2], math.ceil(int(out["image_unpadded_heights"][0][0]) / ph) * ph)
        w = min(pixels.shape[-1], math.ceil(int(out["image_unpadded_widths"][0][0]) / pw) * pw)
        patches = image_processor.patchify_image(pixels[:, :h, :w])
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(patches)).float()[None],
                "grid": torch.tensor([[h // ph, w // pw]])}

    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        rows, cols = (int(v) for v in inputs["grid"][0])
        return rows * (cols + 1)

    @staticmethod
    def media_text_ids(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor],
                       token_ids: dict[str, int]) -> torch.Tensor:
        """(rows * (columns + 1),) -1 at each patch, |NEWLINE| closing each row."""
        rows, cols = (int(v) for v in inputs["grid"][0])
        ids = torch.full((rows, cols + 1), -1, dtype=torch.int64)
        ids[:, -1] = token_ids["|NEWLINE|"]
        return ids.reshape(-1)

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: FuyuForCausalLM does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) per image: its projected patches, row by row, and the
        |NEWLINE| embeddings closing each row (all images' patches in one matmul)."""
        e = self.language_model.model.embed_tokens.weight  # (the linear's weight may be repacked for bf16 tiles)
        patches = [it.inputs["pixel_values"][0] for it in items]
        rows = self.vision_embed_tokens(torch.cat(patches).to(e.device, e.dtype)).split([len(p) for p in patches])
        return [self.with_text_rows(it, r) for it, r in zip(items, rows)]
