"""MediaProcessor: the model's own transformers processor (from its folder) turns images and
video frames into tensors; the model class says how many placeholder tokens each takes; this
expands each placeholder token of the prompt into that many content-hashed ids.

Image processors are the PIL/numpy ones (torchvision is not a dependency)."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .audio import load_audio
from .config import MultimodalConfig
from .items import MediaItem, MultimodalInputs, content_hash, pad_ids
from .media import load_clip, load_image, sample_indices

logger = logging.getLogger("sgl.runtime")


def load_hf_feature_extractor(folder: str) -> Any:
    """The folder's audio feature extractor (Whisper's: numpy)."""
    from transformers import AutoFeatureExtractor

    return AutoFeatureExtractor.from_pretrained(folder)


def load_hf_image_processor(folder: str) -> Any:
    """The folder's image processor, its PIL backend (no torchvision needed)."""
    from transformers import AutoImageProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("transformers").setLevel(logging.ERROR)
        return AutoImageProcessor.from_pretrained(folder, use_fast=False)


def media_token_ids(folder: str, names: tuple[str, ...]) -> dict[str, int]:
    """The ids of the named tokens in the folder's tokenizer (each must be one token)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    ids = {name: tok.convert_tokens_to_ids(name) for name in names}
    missing = [name for name, i in ids.items() if i is None or i == tok.unk_token_id]
    if missing:
        raise ValueError(f"{folder}: the tokenizer has no {', '.join(missing)} token(s) the model's images need")
    return ids


class MediaProcessor:
    def __init__(self, folder: str, mm: MultimodalConfig, model_cls: type, vocab_size: int,
                 allow_urls: bool = False) -> None:
        self.mm, self.model_cls, self.vocab_size, self.allow_urls = mm, model_cls, vocab_size, allow_urls
        # a family whose transformers processor needs torchvision brings its own (Llama 4's)
        load = getattr(model_cls, "load_image_processor", load_hf_image_processor)
        self.image_processor = load(folder) if mm.tower is not None or mm.vq is not None else None
        load_fe = getattr(model_cls, "load_feature_extractor", load_hf_feature_extractor)  # Phi-4-MM: its clip limit
        self.feature_extractor = load_fe(folder) if mm.takes_audio else None
        # a family whose items hold text tokens among their media rows (InternVL's <img>,
        # Pixtral's [IMG_BREAK]) names them in `media_tokens`: their ids, from the folder's tokenizer
        names = getattr(model_cls, "media_tokens", ())
        self.token_ids = media_token_ids(folder, names) if names else {}
        prompt = getattr(model_cls, "prompt_image_token", None)  # Llama 4: prompts hold <|image|>, not <|patch|>
        if prompt is not None:
            # (its config's boi_token_index is no prompt token: the class's names it)
            self.mm = dataclasses.replace(mm, image_token_id=self.token_ids[prompt], prompt_image_token_id=None)
        self.folder, self._tokenizer = folder, None
        video = getattr(model_cls, "prompt_video_token", None)  # SmolVLM: its config names no video token
        if video is not None and self.mm.video_token_id is None:
            token = self.tokenizer.convert_tokens_to_ids(video)
            if token is not None and token != self.tokenizer.unk_token_id:  # else the folder takes no video
                self.mm = dataclasses.replace(self.mm, video_token_id=token)
        # ids before and after an image's expansion (Gemma 3: "\n\n<start_of_image>", "<end_of_image>\n\n")
        wrap = getattr(model_cls, "image_wrap", None)
        self.image_wrap: tuple[list[int], list[int]] = wrap(mm, folder) if wrap else ([], [])
        self.prompt_token = {"image": self.mm.prompt_image_token_id or self.mm.image_token_id,
                             "video": self.mm.video_token_id, "audio": self.mm.audio_token_id}

    def placeholder(self, tokenizer: Any, modality: str) -> str | None:
        """The prompt text that stands for one image or video (None: the model takes none),
        e.g. "<image>", or "<|vision_start|><|image_pad|><|vision_end|>" for Qwen2-VL."""
        token = self.prompt_token[modality]
        if token is None:
            return None
        written = getattr(self.model_cls, "placeholders", {}).get(modality)  # GLM-4V's own begin/end tokens
        if written is not None:
            return written
        if modality == "audio":  # e.g. Qwen2-Audio's "<|audio_bos|><|AUDIO|><|audio_eos|>"
            bos, eos = getattr(self.model_cls, "audio_wrap", ("", ""))
            return bos + tokenizer.convert_ids_to_tokens([token])[0] + eos
        ids = [token] if self.mm.wrap_token_ids is None else [self.mm.wrap_token_ids[0], token, self.mm.wrap_token_ids[1]]
        return "".join(tokenizer.convert_ids_to_tokens(ids))

    @property
    def tokenizer(self) -> Any:
        """The folder's tokenizer, for text a model writes between media items (loaded once)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.folder)
        return self._tokenizer

    def check_prompt(self, ids: list[int]) -> None:
        """A family that reads images but cannot make them (Janus) refuses a prompt asking for
        one: its image-start token, which the engine itself puts before each given image."""
        error = getattr(self.model_cls, "image_generation_error", None)
        if error and self.image_wrap[0] and self.image_wrap[0][-1] in ids:
            raise ValueError(error)

    def text_ids(self, text: str) -> torch.Tensor:
        """(tokens,) a family's item written as text (Idefics3's tile tags, each tile's <image>
        tokens, the global image's): its token ids, -1 at each image-token position (where the
        encoder's rows go, in order)."""
        ids = torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)
        return ids.masked_fill(ids == self.mm.image_token_id, -1)

    def image_inputs(self, image: Any, field: str, count: int = 1) -> dict[str, torch.Tensor]:
        """The processor's tensors of one image of a prompt that has `count` images (a model
        class may process several images per prompt differently: `image_inputs`)."""
        img = load_image(image, field, self.allow_urls)
        hook = getattr(self.model_cls, "image_inputs", None)
        # the family's processor arguments (InternVL's crop_to_patches, Pixtral's merged patch size)
        kwargs = self.model_cls.image_kwargs(self.mm) if hasattr(self.model_cls, "image_kwargs") else {}
        out = hook(self.image_processor, img, count) if hook else \
            self.image_processor(images=[img], return_tensors="pt", **kwargs)
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}

    def video_inputs(self, video: Any, field: str) -> dict[str, torch.Tensor]:
        data, num_frames = video, None
        if isinstance(video, dict):
            data, num_frames = video.get("data", video.get("path")), video.get("num_frames")
        sample = getattr(self.model_cls, "sample_frames", sample_indices)  # InternVL: its processor's rule
        frames, fps = load_clip(data, num_frames, field, self.allow_urls, sample)
        return self.model_cls.video_inputs(self.mm, self.image_processor, np.asarray(frames), fps)

    def audio_inputs(self, audio: Any, field: str) -> dict[str, torch.Tensor]:
        """The feature extractor's tensors of one clip (decoded and resampled to its rate)."""
        fe = self.feature_extractor
        samples = load_audio(audio, fe.sampling_rate, fe.n_samples, field, self.allow_urls)
        return self.model_cls.audio_inputs(fe, samples)

    def expand(self, ids: list[int], images: list[Any], videos: list[Any],
               audios: list[Any] = ()) -> tuple[list[int], MultimodalInputs]:
        """The prompt with each image/video placeholder token expanded into its item's ids, and
        the items. Raises ValueError naming the field when the counts do not match."""
        arrange = getattr(self.model_cls, "arrange_prompt", None)  # BLIP-2: its image before the BOS
        if arrange is not None and images:
            ids = arrange(ids, self.prompt_token["image"], self.tokenizer.bos_token_id)
        wanted = {"image": (self.prompt_token["image"], images, "image_data"),
                  "video": (self.prompt_token["video"], videos, "video_data"),
                  "audio": (self.prompt_token["audio"], list(audios), "audio_data")}
        for modality, (token, given, name) in wanted.items():
            if given and token is None:
                raise ValueError(f"{name}: {self.model_cls.__name__} does not take {modality}s")
            count = sum(1 for t in ids if t == token) if token is not None else 0
            if count != len(given):
                raise ValueError(f"{name}: the prompt has {count} {modality} placeholder token(s) (id {token}) "
                                 f"but {len(given)} {modality}(s) were given; put one placeholder per {modality}")
        kinds = {token: modality for modality, (token, _, _) in wanted.items() if token is not None}
        seen = {"image": 0, "video": 0, "audio": 0}
        out: list[int] = []
        items: list[MediaItem] = []
        floor, k = 0, 0  # out[:floor] ends with the last media expansion; ids[k] is the next prompt token
        while k < len(ids):
            t = ids[k]
            k += 1
            modality = kinds.get(t)
            if modality is None:
                out.append(t)
                continue
            i = seen[modality]
            seen[modality] += 1
            _, given, name = wanted[modality]
            field = f"{name}[{i}]" if len(given) > 1 else name
            if modality == "image" and isinstance(given[i], str) and given[i].startswith("video:"):
                # SGLang's frontend sends sgl.video as PNG frames at an image placeholder
                if self.mm.video_token_id is None:
                    raise ValueError(f"{field}: a 'video:' entry is a video; {self.model_cls.__name__} does not "
                                     "take videos")
                modality = "video"
            if modality == "image":
                inputs = self.image_inputs(given[i], field, len(given))
            elif modality == "audio":
                inputs = self.audio_inputs(given[i], field)
                mark = getattr(self.model_cls, "mark_audio", None)  # Phi-4-MM: its projector depends on images
                if mark is not None:
                    inputs = mark(inputs, bool(images))
            else:
                inputs = self.video_inputs(given[i], field)
            split = getattr(self.model_cls, "split_video", None) if modality == "video" else None
            before, after = self.image_wrap if modality == "image" else ([], [])
            # Qwen3-VL: a video is its frames (items) with text between them (timestamps)
            parts = split(self.mm, inputs) if split else [inputs]
            if modality in getattr(self.model_cls, "text_joins_prompt", ()):
                k = self._join_prompt_text(parts, out, floor, ids, k)
            for part in parts:
                if isinstance(part, str):
                    out += self.tokenizer(part, add_special_tokens=False)["input_ids"]
                    continue
                if hasattr(self.model_cls, "media_text"):  # the item is text with its rows' tokens in it
                    part["text_ids"] = self.text_ids(self.model_cls.media_text(self.mm, modality, part))
                    n = len(part["text_ids"])
                else:
                    n = self.model_cls.num_media_tokens(self.mm, modality, part)
                if self.token_ids:  # (n,) the text token at each position, -1 where encoder rows go
                    part["text_ids"] = self.model_cls.media_text_ids(self.mm, modality, part, self.token_ids)
                h = content_hash(part, modality)
                out += before
                items.append(MediaItem(modality, part, h, len(out), n))
                pads = pad_ids(h, n, self.vocab_size)
                text = part.get("text_ids")
                out += (pads if text is None else [p if t < 0 else t for p, t in zip(pads, text.tolist())]) + after
            floor = len(out)
        mm = MultimodalInputs(items, cross=bool(getattr(self.model_cls, "cross_attention", False)))  # Mllama
        if items and hasattr(self.model_cls, "noncausal_spans"):  # Gemma 3's images, PaliGemma's prefix
            mm.noncausal = tuple(self.model_cls.noncausal_spans(self.mm, len(out), items))
        if items and hasattr(self.model_cls, "mrope"):  # M-RoPE: 3-D positions of the prompt
            mm.mrope, mm.mrope_delta = self.model_cls.mrope(self.mm, len(out), items)
        return out, mm


    def _join_prompt_text(self, parts: list[Any], out: list[int], floor: int, ids: list[int], k: int) -> int:
        """SmolVLM's video text is written into the prompt's text, so its first and last text
        parts tokenize together with the prompt text around the placeholder, up to an added
        token (where transformers' tokenizers split): that text is taken off `out` (down to
        `floor`) and out of ids[k:], decoded and joined to them. -> the next index into ids."""
        bounds = set(self.tokenizer.added_tokens_decoder)
        start, end = len(out), k
        while start > floor and out[start - 1] not in bounds:
            start -= 1
        while end < len(ids) and ids[end] not in bounds:
            end += 1
        decode = lambda x: self.tokenizer.decode(x, clean_up_tokenization_spaces=False)  # noqa: E731
        lead, follow = decode(out[start:]), decode(ids[k:end])
        del out[start:]
        if isinstance(parts[0], str):
            parts[0] = lead + parts[0]
        else:
            parts.insert(0, lead)
        if isinstance(parts[-1], str):
            parts[-1] += follow
        else:
            parts.append(follow)
        return end


def as_list(x: Any) -> list[Any]:
    """One item or a list of items (one per placeholder, in order)."""
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def expand_prompts(processor: MediaProcessor | None, architecture: str, prompts: list[list[int]], is_batch: bool,
                   image_data: Any, video_data: Any, check_length: Callable[[list[int]], list[int]],
                   audio_data: Any = None) -> list[tuple[list[int], MultimodalInputs | None]] | None:
    """Per prompt: its ids with media placeholders expanded, and its media (None: no media at
    all). Everything is loaded and checked before any request is queued."""
    given = {"image_data": image_data, "video_data": video_data, "audio_data": audio_data}
    for ids in prompts if processor is not None else ():
        processor.check_prompt(ids)
    if all(v is None for v in given.values()):
        return None
    if processor is None:
        name = next(k for k, v in given.items() if v is not None)
        raise ValueError(f"{name}: {architecture} is a text-only model; serve a vision-language (or audio) model "
                         "to send images, video or audio")
    per_prompt = []
    for name, data in given.items():
        if not is_batch:
            per_prompt.append([as_list(data)])
        elif data is None:
            per_prompt.append([[] for _ in prompts])
        elif not isinstance(data, list) or len(data) != len(prompts):
            raise ValueError(f"{name}: for a list of {len(prompts)} prompts give a list with one entry per "
                             "prompt (an item, a list of items, or None)")
        else:
            per_prompt.append([as_list(d) for d in data])
    out = []
    for ids, images, videos, audios in zip(prompts, *per_prompt):
        expanded, mm = processor.expand(ids, images, videos, audios)
        out.append((check_length(expanded), mm if mm.items else None))
    return out
