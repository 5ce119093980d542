"""Media items of a request: processed pixels, their content hash, and where their
placeholder tokens sit in the prompt.

NOTE (the radix cache keys media by content): placeholder position i of an item holds the id
`hash(item hash, i) % vocab` (as SGLang's pad_input_ids pads with a hash of the pixels), so a
prompt with the same pixels at the same place reuses the cached KV, and different pixels
diverge from the item's first token (all of an item's ids would have to collide to reuse a
wrong one)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


def content_hash(tensors: dict[str, torch.Tensor], modality: str) -> int:
    """A 64-bit hash of processed media (values, shapes and dtypes)."""
    digest = hashlib.sha256(modality.encode())
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return int.from_bytes(digest.digest()[:8], "little")


def pad_ids(item_hash: int, length: int, vocab_size: int) -> list[int]:
    """The placeholder ids of an item's `length` positions (see the module note)."""
    ids = []
    for i in range(length):
        h = hashlib.blake2b(f"{item_hash}:{i}".encode(), digest_size=8).digest()
        ids.append(int.from_bytes(h, "little") % vocab_size)
    return ids


@dataclass(eq=False)
class MediaItem:
    modality: str  # "image" | "video"
    inputs: dict[str, torch.Tensor]  # the processor's tensors for this item (pixel_values, ...)
    hash: int
    offset: int  # prompt position of its first placeholder token
    length: int  # placeholder tokens it takes (rows of its encoder output)
    # cross-attention (Mllama): the image's keys and values while its request lives (set by the
    # runner: multimodal/cross_kv.py), so a running request never recomputes them whatever the
    # cache evicts; None until its first forward
    cross_kv: torch.Tensor | None = field(default=None, repr=False)

    @property
    def end(self) -> int:
        return self.offset + self.length

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.inputs.values())


@dataclass(frozen=True)
class MediaSpan:
    """Rows [lo, hi) of an item's encoder output, for the chunk's tokens from `at` on."""

    item: MediaItem
    lo: int
    hi: int
    at: int  # offset from the first token the chunk computes


@dataclass
class MultimodalInputs:
    """A request's media in prompt order (kept across retraction: a resumed request embeds
    them again from the encoder cache or the encoder)."""

    items: list[MediaItem] = field(default_factory=list)
    # M-RoPE (Qwen2-VL): (3, prompt tokens) temporal/height/width positions of the prompt, and
    # the shift of every later token (outputs): position i >= prompt length is i + mrope_delta
    mrope: torch.Tensor | None = None
    mrope_delta: int = 0
    # non-causal spans [start, end) of the prompt, sorted and disjoint (Gemma 3: each image's
    # tokens; PaliGemma: image + prompt): a token of a span sees every key of its span.
    # INVARIANT (the scheduler keeps it): a span's tokens are computed in one forward, so their
    # KV never depends on how the prompt was chunked or which prefix was cached
    noncausal: tuple[tuple[int, int], ...] = ()
    # cross-attention (Mllama): the items are not rows of the prompt but keys and values every
    # later token attends to (runtime/layers/cross_attention.py); each item holds one prompt token
    cross: bool = False

    def prefix_cut(self, n: int) -> int:
        """The longest usable cached prefix of at most n tokens: one ending inside a span stops
        at the span's start (the span is then computed whole)."""
        for lo, hi in self.noncausal:
            if lo < n < hi:
                return lo
        return n

    def chunk_end(self, start: int, end: int) -> int:
        """Where a chunk [start, end) may end: before a span it would cut, or past that span's
        end when the span begins at `start` (a span longer than a chunk is computed whole)."""
        for lo, hi in self.noncausal:
            if lo < end < hi:
                return lo if lo > start else hi
        return end

    def attend_spans(self, start: int, end: int) -> list[tuple[int, int]] | None:
        """Per token of [start, end): the span it belongs to ((0, 0): none); None when no span
        touches [start, end)."""
        spans = [(lo, hi) for lo, hi in self.noncausal if lo < end and hi > start]
        if not spans:
            return None
        out = [(0, 0)] * (end - start)
        for lo, hi in spans:
            out[max(lo, start) - start : min(hi, end) - start] = [(lo, hi)] * (min(hi, end) - max(lo, start))
        return out

    def cross_groups(self, start: int, end: int) -> list[tuple[int, int]] | None:
        """Per token of [start, end): the items [a, b) it cross-attends ((0, 0): none); None
        without cross-attention. transformers' rule (MllamaProcessor's cross-attention token
        mask): image k is seen from its token up to the next image's token, consecutive images
        share the extent of the last of them, and the last image is seen by every later token
        (outputs too: generate repeats the last prompt row). Extents only grow with k, so the
        images a token sees are a contiguous range."""
        if not self.cross or not self.items:
            return None
        starts = [it.offset for it in self.items]
        ends = starts[1:] + [1 << 62]
        for k in range(len(ends) - 2, -1, -1):
            if starts[k] == starts[k + 1] - 1:
                ends[k] = ends[k + 1]
        out = []
        for t in range(start, end):
            seen = [k for k in range(len(starts)) if starts[k] <= t < ends[k]]
            out.append((seen[0], seen[-1] + 1) if seen else (0, 0))
        return out

    def positions(self, start: int, end: int) -> torch.Tensor | None:
        """(3, end - start) M-RoPE positions of tokens [start, end); None without M-RoPE."""
        if self.mrope is None:
            return None
        prompt = self.mrope.shape[1]
        first = max(start, prompt)
        later = torch.arange(first, max(first, end), dtype=torch.int64) + self.mrope_delta
        return torch.cat([self.mrope[:, start:min(end, prompt)], later.expand(3, -1)], dim=1)

    def spans(self, start: int, end: int) -> tuple[MediaSpan, ...]:
        """The parts of items inside positions [start, end) (a chunk embeds only its part)."""
        out = []
        for it in self.items:
            lo, hi = max(it.offset, start), min(it.end, end)
            if lo < hi:
                out.append(MediaSpan(it, lo - it.offset, hi - it.offset, lo - start))
        return tuple(out)
