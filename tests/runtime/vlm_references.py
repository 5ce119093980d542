"""transformers references for InternVL and the Pixtral-tower families (Mistral3, LLaVA with
Pixtral), on the tiny checkpoints of sgl.runtime.multimodal.random_intern: the folder's PIL
image processor, the prompt expanded as the family's processor does (InternVLProcessor needs
torchvision for its video processor, so its expansion is written out here)."""

from __future__ import annotations

import torch
from mm_fixtures import LlavaReference, assert_qwen_parity, hf_parts, png_bytes

GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}


def check(result: dict, reference: LlavaReference, prompt: str, images: list, start: int = 0,
          clips: list = ()) -> None:
    """Prompt logprobs of text targets from `start` on (image rows hold hashed ids; the family's
    tokens among them, <img> or [IMG_BREAK], are compared too) and 16 greedy tokens. `clips`:
    the audio of a reference that takes it (Phi-4-multimodal's), its rows skipped too."""
    key = (prompt, tuple(id(im) for im in images), start, tuple(id(c) for c in clips))
    memo = reference.__dict__.setdefault("memo", {})  # the same request checked on several engines
    media = (prompt, images, clips) if clips else (prompt, images)
    if key not in memo:
        memo[key] = (*reference.prompt_logprobs(*media), reference.greedy(*media))
    ids, expected, greedy = memo[key]
    meta = result["meta_info"]
    assert meta["prompt_tokens"] == len(ids)
    ours = torch.tensor([row[0] for row in meta["input_token_logprobs"][1:]])
    assert len(ours) == len(ids) - 1 - start
    skipped = {reference.image_token, getattr(reference, "audio_token", reference.image_token)}
    text = torch.tensor([t not in skipped for t in ids[start + 1:]])
    assert (ours[text] - expected[start:][text]).abs().max() < 1e-4
    assert result["output_ids"] == greedy


def run(engine, prompt, images, start: int = 0, clips: list = ()):
    return engine.generate(prompt, GREEDY, image_data=images, audio_data=list(clips) or None,
                           return_logprob=True, logprob_start_len=start)



def check_alone_and_chunked(engines: tuple, reference: LlavaReference, prompts: tuple[str, str],
                            images: tuple[list, list]) -> None:
    """Each (prompt, its images) on each engine (whole prefill, chunks smaller than an image)
    from an empty cache, equal to the reference."""
    for prompt, imgs in zip(prompts, images):
        for e in engines:
            e.flush_cache()
            check(run(e, prompt, imgs), reference, prompt, imgs)
            e.check_kv()


def check_batched_cached_repeated(engine, reference: LlavaReference, prompts: tuple[str, str], images: list,
                                  min_prefix: int) -> None:
    """One image's prompt, a text one and two images' prompt in one batch; the second again,
    longer, behind its cached prefix (more than min_prefix tokens); the first image again (as
    PNG bytes) reuses its KV and runs no encoder, other pixels run it once and share only the
    text before the image's first row."""
    from mm_fixtures import png_bytes, random_image

    one, two = prompts
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
    assert again["meta_info"]["cached_tokens"] >= start > min_prefix
    check(again, reference, longer, images[1:], start)
    runs = engine.get_server_info()["vision_encoder_runs"]
    same = engine.generate(one, GREEDY, image_data=png_bytes(images[0]))
    other = engine.generate(one, GREEDY, image_data=random_image(5))
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"] != other["output_ids"]
    ids = reference.inputs(one, [random_image(5)])["input_ids"][0].tolist()
    first = ids.index(reference.image_token)  # the text before it (InternVL's <img>, Janus's <begin_of_image>) is shared
    assert other["meta_info"]["cached_tokens"] == first
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


class Blip2Reference(LlavaReference):
    """BLIP-2: each <image> of the prompt becomes num_query_tokens <image> ids (Blip2Processor
    puts one image's before the text: the same ids when the prompt starts with <image>)."""

    def __init__(self, folder: str) -> None:
        self.tokenizer, self.image_processor, self.model = hf_parts(folder)
        self.image_token = self.model.config.image_token_id
        self.queries = self.model.config.num_query_tokens

    def inputs(self, prompt: str, images: list):
        enc = dict(self.image_processor(images=images, return_tensors="pt")) if images else {}
        ids: list[int] = []
        for t in self.tokenizer(prompt)["input_ids"]:
            ids += [t] * self.queries if t == self.image_token else [t]
        return {**enc, "input_ids": torch.tensor([ids])}

    @torch.inference_mode()
    def prompt_logprobs(self, prompt: str, images: list) -> tuple[list[int], torch.Tensor]:
        if images:
            return super().prompt_logprobs(prompt, images)
        ids = self.inputs(prompt, [])["input_ids"]  # text alone: the language model (BLIP-2's forward needs pixels)
        logits = self.model.language_model(input_ids=ids).logits[0].float()
        return ids[0].tolist(), torch.log_softmax(logits[:-1], -1).gather(1, ids[0, 1:, None])[:, 0]

    @torch.inference_mode()
    def greedy(self, prompt: str, images: list, n: int = 16) -> list[int]:
        if images:
            return super().greedy(prompt, images, n)
        ids = self.inputs(prompt, [])["input_ids"]
        out = self.model.language_model.generate(input_ids=ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[0, -n:].tolist()


class FuyuReference(LlavaReference):
    """Fuyu: each |SPEAKER| of the prompt replaced by FuyuProcessor's own text for the image
    (its replace_image_token: rows of |SPEAKER| * columns + |NEWLINE|, then <s>) and the
    patches of the image cropped as its _process_images does. (transformers 5.24's
    _process_images and __call__ fail with the PIL image processor: they take its numpy
    images for torch tensors; __call__ also strips a first token meant for SentencePiece's "▁",
    which the tests' byte-level tokenizer does not add. So the steps are taken one by one.)"""

    def __init__(self, folder: str) -> None:
        from transformers import AutoProcessor

        self.tokenizer, _, self.model = hf_parts(folder)
        self.processor = AutoProcessor.from_pretrained(folder)
        self.image_token = self.model.config.image_token_id

    def image(self, img) -> tuple[torch.Tensor, str]:
        """(patches, 3 * patch^2) and the image's replacement text."""
        import math

        import numpy as np

        ip = self.processor.image_processor
        out = ip([img])
        pixels = np.asarray(out["images"][0][0])
        ph, pw = ip.patch_size["height"], ip.patch_size["width"]
        h = min(pixels.shape[-2], math.ceil(out["image_unpadded_heights"][0][0] / ph) * ph)
        w = min(pixels.shape[-1], math.ceil(out["image_unpadded_widths"][0][0] / pw) * pw)
        text = self.processor.replace_image_token(out, 0, num_patches=ip.get_num_patches(h, w), row_width=w // pw)
        return torch.from_numpy(ip.patchify_image(pixels[:, :h, :w])), text

    def inputs(self, prompt: str, images: list):
        ids: list[int] = []
        patches = []
        todo = iter(images)
        for t in self.tokenizer(prompt)["input_ids"]:
            if t != self.image_token:
                ids.append(t)
                continue
            rows, text = self.image(next(todo))
            patches.append(rows)
            ids += self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return {**({"pixel_values": torch.cat(patches)} if patches else {}), "input_ids": torch.tensor([ids])}


class JanusReference(LlavaReference):
    """Janus: JanusProcessor itself (its PIL image processor; each <image_placeholder> becomes
    <begin_of_image>, num_image_tokens placeholders, <end_of_image>), text generation mode."""

    def __init__(self, folder: str) -> None:
        import transformers
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(folder, use_fast=False)
        self.model = transformers.JanusForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        self.image_token = self.model.config.image_token_id


# ---- the Qwen-style families (M-RoPE, video as frames: Qwen3-VL, GLM-4V) ----------------------
def engine_videos(engine, video: dict | None) -> list:
    """The video's pixels as the engine makes them, with the sampled clip's fps and frame count
    (the references' prompt text needs them)."""
    from sgl.runtime.multimodal.media import load_clip

    if video is None:
        return []
    frames, fps = load_clip(video["data"], video["num_frames"])
    inputs = engine._media.video_inputs(video, "video_data")
    return [{"pixel_values_videos": inputs["pixel_values_videos"], "video_grid_thw": inputs["video_grid_thw"],
             "fps": fps, "frames": len(frames)}]


def check_media(engine, result: dict, reference, prompt: str, images: list, video=None, start: int = 0) -> None:
    assert_qwen_parity(result, reference, prompt, images, engine_videos(engine, video), start)


def run_media(engine, prompt, images, video=None, start: int = 0):
    return engine.generate(prompt, GREEDY, image_data=images, video_data=video, return_logprob=True,
                           logprob_start_len=start)


def check_video_batched_cached_repeated(engine, reference, one: tuple[str, list], vid: tuple[str, list], video: dict,
                                  min_prefix: int) -> None:
    """`one` (prompt, images) and `vid` (prompt, images) with `video`, batched with a text
    request; `vid` again behind its cached prefix (the rest continues its positions); `one`'s
    image again as PNG bytes reuses its KV without running the encoder."""
    engine.flush_cache()
    text = "Plain text, no pictures at all here."
    out = engine.generate([one[0], text, vid[0]], GREEDY, image_data=[one[1][0], None, vid[1] or None],
                          video_data=[None, None, video], return_logprob=True, logprob_start_len=0)
    check_media(engine, out[0], reference, *one)
    check_media(engine, out[2], reference, *vid, video)
    assert out[1]["output_ids"] == reference.greedy(text, [])
    longer = vid[0] + " Answer in one word."
    start = len(reference.inputs(*vid, engine_videos(engine, video))["input_ids"][0]) - 1
    again = run_media(engine, longer, vid[1], video, start)
    assert again["meta_info"]["cached_tokens"] >= start > min_prefix
    check_media(engine, again, reference, longer, vid[1], video, start)
    runs = engine.get_server_info()["vision_encoder_runs"]
    same = engine.generate(one[0], GREEDY, image_data=png_bytes(one[1][0]))
    assert same["meta_info"]["cached_tokens"] == same["meta_info"]["prompt_tokens"] - 1
    assert same["output_ids"] == out[0]["output_ids"]
    assert engine.get_server_info()["vision_encoder_runs"] == runs
    engine.check_kv()
class MllamaReference(LlavaReference):
    """transformers' Mllama fed by the folder's MllamaProcessor (PIL image processor; it adds
    the bos after leading <|image|> tokens); vision_runs counts its vision-model calls."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoProcessor, MllamaForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(folder, use_fast=False)
        self.model = MllamaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        self.image_token = self.model.config.image_token_index

    def inputs(self, prompt: str, images: list):
        return self.processor(text=prompt, images=[images] if images else None, return_tensors="pt")


class ChameleonReference(LlavaReference):
    """transformers' Chameleon fed by the folder's ChameleonProcessor (completion form: no sep
    token appended)."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoProcessor, ChameleonForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(folder, use_fast=False)
        self.model = ChameleonForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        self.image_token = self.model.config.image_token_id

    def inputs(self, prompt: str, images: list):
        return self.processor(text=prompt, images=images or None, return_tensors="pt", return_for_text_completion=True)


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
