"""transformers references for InternVL and the Pixtral-tower families (Mistral3, LLaVA with
Pixtral), on the tiny checkpoints of sgl.runtime.multimodal.random_intern: the folder's PIL
image processor, the prompt expanded as the family's processor does (InternVLProcessor needs
torchvision for its video processor, so its expansion is written out here)."""

from __future__ import annotations

import torch
from mm_fixtures import LlavaReference, hf_parts

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}


def check(result: dict, reference: LlavaReference, prompt: str, images: list, start: int = 0) -> None:
    """Prompt logprobs of text targets from `start` on (image rows hold hashed ids; the family's
    tokens among them, <img> or [IMG_BREAK], are compared too) and 16 greedy tokens."""
    key = (prompt, tuple(id(im) for im in images), start)
    memo = reference.__dict__.setdefault("memo", {})  # the same request checked on several engines
    if key not in memo:
        memo[key] = (*reference.prompt_logprobs(prompt, images), reference.greedy(prompt, images))
    ids, expected, greedy = memo[key]
    meta = result["meta_info"]
    assert meta["prompt_tokens"] == len(ids)
    ours = torch.tensor([row[0] for row in meta["input_token_logprobs"][1:]])
    assert len(ours) == len(ids) - 1 - start
    text = torch.tensor([t != reference.image_token for t in ids[start + 1:]])
    assert (ours[text] - expected[start:][text]).abs().max() < 1e-4
    assert result["output_ids"] == greedy


def run(engine, prompt, images, start: int = 0):
    return engine.generate(prompt, GREEDY, image_data=images, return_logprob=True, logprob_start_len=start)


def check_batched_cached_repeated(engine, reference, one: str, two: str, images: list, other) -> None:
    """`one` (an image: images[0]) and `two` (two: images[1:]) batched with a text request;
    `two` again with more text behind its cached prefix; the same pixels (as PNG bytes) reuse
    the image's KV and run no encoder, `other` pixels share only the text before the first
    image row and run it once."""
    from mm_fixtures import png_bytes

    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([one, text, two], GREEDY, image_data=[images[0], None, images[1:]],
                          return_logprob=True, logprob_start_len=0)
    check(out[0], reference, one, images[:1])
    check(out[2], reference, two, images[1:])
    assert out[1]["output_ids"] == reference.greedy(text, [])
    longer = two + " Answer in one word."
    start = len(reference.inputs(two, images[1:])["input_ids"][0]) - 1
    again = run(engine, longer, images[1:], start)
    assert again["meta_info"]["cached_tokens"] >= start > 16
    check(again, reference, longer, images[1:], start)
    runs = engine.get_server_info()["vision_encoder_runs"]
    same = engine.generate(one, GREEDY, image_data=png_bytes(images[0]))
    different = engine.generate(one, GREEDY, image_data=other)
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"] != different["output_ids"]
    ids = reference.inputs(one, [other])["input_ids"][0].tolist()
    first = ids.index(reference.image_token)  # text before the first image row (InternVL's <img> too) is shared
    assert different["meta_info"]["cached_tokens"] == first
    assert engine.get_server_info()["vision_encoder_runs"] == runs + 1
    engine.check_kv()


class InternVLReference(LlavaReference):
    """Each <IMG_CONTEXT> becomes <img>, 16 context tokens a tile, </img> (InternVLProcessor's rule)."""

    def __init__(self, folder: str) -> None:
        self.tokenizer, self.image_processor, self.model = hf_parts(folder)
        self.image_token = self.model.config.image_token_id
        self.wrap = self.tokenizer.convert_tokens_to_ids(["<img>", "</img>"])

    def inputs(self, prompt: str, images: list):
        enc = dict(self.image_processor(images=images, crop_to_patches=True, return_tensors="pt")) if images else {}
        tiles = iter(enc.pop("num_patches", torch.tensor([])).tolist())
        ids: list[int] = []
        for t in self.tokenizer(prompt)["input_ids"]:
            ids += [self.wrap[0], *[t] * 16 * next(tiles), self.wrap[1]] if t == self.image_token else [t]
        return {**enc, "input_ids": torch.tensor([ids])}


class PixtralReference(LlavaReference):
    """Mistral3 / LLaVA-Pixtral: images through the image processor with patch_size * merge
    pixels a token (as PixtralProcessor asks), each [IMG] expanded as PixtralProcessor does:
    rows of [IMG] * columns + [IMG_BREAK], the last [IMG_BREAK] made [IMG_END]."""

    def __init__(self, folder: str) -> None:
        self.tokenizer, self.image_processor, self.model = hf_parts(folder)
        c = self.model.config
        self.image_token = c.image_token_id
        self.side = c.vision_config.patch_size * getattr(c, "spatial_merge_size", 1)
        self.brk, self.end = self.tokenizer.convert_tokens_to_ids(["[IMG_BREAK]", "[IMG_END]"])

    def inputs(self, prompt: str, images: list):
        side = {"height": self.side, "width": self.side}
        enc = dict(self.image_processor(images=images, patch_size=side, return_tensors="pt")) if images else {}
        sizes = iter(enc.get("image_sizes", torch.zeros(0, 2)).tolist())
        ids: list[int] = []
        for t in self.tokenizer(prompt)["input_ids"]:
            if t != self.image_token:
                ids.append(t)
                continue
            h, w = (int(v) // self.side for v in next(sizes))
            rows = [[t] * w + [self.brk] for _ in range(h)]
            rows[-1][-1] = self.end
            ids += [x for row in rows for x in row]
        return {**enc, "input_ids": torch.tensor([ids])}


class Llama4Reference(LlavaReference):
    """Llama 4: the pixels of sgl's PIL port of its image processor (transformers' needs
    torchvision), each <|image|> replaced by Llama4Processor's own _prompt_split_image text."""

    def __init__(self, folder: str) -> None:
        from sgl.runtime.multimodal.llama4_images import Llama4ImageProcessor
        from transformers import AutoTokenizer, Llama4ForConditionalGeneration

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.image_processor = Llama4ImageProcessor.from_folder(folder)
        self.model = Llama4ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        c = self.model.config
        self.image_token = c.image_token_id  # <|patch|>
        side = c.vision_config.image_size // c.vision_config.patch_size
        self.per_tile = int(side * side * c.vision_config.pixel_shuffle_ratio**2)

    def inputs(self, prompt: str, images: list):
        from transformers.models.llama4.processing_llama4 import Llama4Processor

        enc = self.image_processor(images) if images else {}
        parts = prompt.split("<|image|>")
        text = parts[0]
        for ratio, part in zip(enc.get("aspect_ratios", []), parts[1:]):
            text += Llama4Processor._prompt_split_image(None, ratio.tolist(), self.per_tile) + part
        ids = self.tokenizer(text)["input_ids"]
        return {**({"pixel_values": enc["pixel_values"].float()} if images else {}), "input_ids": torch.tensor([ids])}

    def embeds(self, prompt: str, images: list) -> tuple[list[int], torch.Tensor]:
        """(ids, (1, len, hidden) input embeddings) by transformers' own steps: its forward
        computes these, then fails building its output (transformers 5.24 reads
        image_outputs from the text model's output), so the text model runs on them directly."""
        enc = self.inputs(prompt, images)
        m, ids = self.model, enc["input_ids"]
        emb = m.get_input_embeddings()(ids)
        if images:
            feats = m.get_image_features(pixel_values=enc["pixel_values"], return_dict=True).last_hidden_state
            rows = m.multi_modal_projector(feats.view(-1, feats.size(-1)))
            emb = emb.masked_scatter(m.get_placeholder_mask(ids, inputs_embeds=emb, image_features=rows), rows)
        return ids[0].tolist(), emb

    @torch.inference_mode()
    def prompt_logprobs(self, prompt: str, images: list) -> tuple[list[int], torch.Tensor]:
        ids, emb = self.embeds(prompt, images)
        logits = self.model.language_model(inputs_embeds=emb).logits[0].float()
        return ids, torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

    @torch.inference_mode()
    def greedy(self, prompt: str, images: list, n: int = 16) -> list[int]:
        _, emb = self.embeds(prompt, images)
        out = self.model.language_model.generate(inputs_embeds=emb, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[0, -n:].tolist()


class Idefics3Reference(LlavaReference):
    """Idefics3 / SmolVLM: Idefics3 through its own Idefics3Processor; SmolVLM through its PIL
    image processor (tiles, rows, cols) with each <image> replaced by transformers'
    get_image_prompt_string (SmolVLMProcessor needs a torchvision video processor)."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoProcessor

        self.tokenizer, self.image_processor, self.model = hf_parts(folder)
        c = self.model.config
        self.image_token = c.image_token_id
        self.tokens = int((c.vision_config.image_size // c.vision_config.patch_size) ** 2 / c.scale_factor**2)
        smol = c.model_type == "smolvlm"
        self.processor = None if smol else AutoProcessor.from_pretrained(folder, use_fast=False)

    def inputs(self, prompt: str, images: list, **images_kwargs):
        """A prompt with images, or with one <video> (then `images` is [its frames' pixels, fps])."""
        from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

        if "<video>" in prompt:
            return self.video_inputs(prompt, *images)
        if self.processor is not None:
            return self.processor(text=prompt, images=images or None, return_tensors="pt", **images_kwargs)
        enc = dict(self.image_processor(images=images, return_row_col_info=True, return_tensors="pt",
                                        **images_kwargs)) if images else {}
        grids = zip(enc.pop("rows", [[]])[0], enc.pop("cols", [[]])[0])
        parts = prompt.split("<image>")
        text = parts[0] + "".join(get_image_prompt_string(*next(grids), self.tokens, "<fake_token_around_image>",
                                                          "<image>", "<global-img>") + part for part in parts[1:])
        return {**enc, "input_ids": torch.tensor([self.tokenizer(text)["input_ids"]])}

    def video_inputs(self, prompt: str, pixels: torch.Tensor, fps: float) -> dict:
        """A prompt with one <video> (SmolVLM), its frames' pixels given (sgl's: the video
        processor needs torchvision), expanded by SmolVLMProcessor.replace_video_token itself
        on a stand-in processor, with a clip of those frames at `fps`."""
        from types import SimpleNamespace

        from transformers.models.smolvlm.processing_smolvlm import SmolVLMProcessor
        from transformers.video_utils import VideoMetadata

        n = pixels.shape[0]
        meta = VideoMetadata(total_num_frames=n, fps=fps, duration=n / fps, frames_indices=list(range(n)))
        stand_in = SimpleNamespace(image_seq_len=self.tokens, image_token="<image>", global_image_token="<global-img>",
                                   fake_image_token="<fake_token_around_image>")
        video = SmolVLMProcessor.replace_video_token(stand_in, {"pixel_values": pixels[None],
                                                                 "video_metadata": [meta]}, 0)
        ids = self.tokenizer(prompt.replace("<video>", video))["input_ids"]
        return {"pixel_values": pixels[None], "input_ids": torch.tensor([ids])}
