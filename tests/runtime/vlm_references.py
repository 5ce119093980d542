"""transformers references for InternVL and the Pixtral-tower families (Mistral3, LLaVA with
Pixtral), on the tiny checkpoints of sgl.runtime.multimodal.random_intern: the folder's PIL
image processor, the prompt expanded as the family's processor does (InternVLProcessor needs
torchvision for its video processor, so its expansion is written out here)."""

from __future__ import annotations

import torch
from mm_fixtures import LlavaReference


class InternVLReference(LlavaReference):
    """Each <IMG_CONTEXT> becomes <img>, 16 context tokens a tile, </img> (InternVLProcessor's rule)."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, InternVLForConditionalGeneration

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.image_processor = AutoImageProcessor.from_pretrained(folder, use_fast=False)
        self.model = InternVLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        self.image_token = self.model.config.image_token_id
        self.wrap = self.tokenizer.convert_tokens_to_ids(["<img>", "</img>"])
        self.encoder_runs = 0
        self.model.model.vision_tower.register_forward_hook(lambda *a: self._count())

    def inputs(self, prompt: str, images: list):
        enc = dict(self.image_processor(images=images, crop_to_patches=True, return_tensors="pt")) if images else {}
        tiles = iter(enc.pop("num_patches", torch.tensor([])).tolist())
        ids: list[int] = []
        for t in self.tokenizer(prompt)["input_ids"]:
            ids += [self.wrap[0], *[t] * 16 * next(tiles), self.wrap[1]] if t == self.image_token else [t]
        return {**enc, "input_ids": torch.tensor([ids])}
