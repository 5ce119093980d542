"""The tokenizer seen as bytes: each token id -> the exact bytes it contributes to the text.

Byte-level BPE (GPT-2, SmolLM, Llama-3, Qwen) stores bytes as printable stand-in characters
("Ġ" is a space); SentencePiece stores "▁" for a space and "<0x0A>" for raw bytes. Special
tokens (EOS, chat markers) have no text and are never allowed by a grammar; the EOS ids are
allowed exactly when the grammar can end.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from outlines_core import Vocabulary

from .regex_text import END, SENTINEL


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_BYTE_DECODER = _byte_decoder()
_LEAD_F4 = b"\xf4"
_SPM_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in repr(decoder)


def token_to_bytes(token: str, byte_level: bool) -> bytes | None:
    """Bytes of one vocabulary string, or None if it is not pure text (cannot be decoded)."""
    if byte_level:
        try:
            return bytes(_BYTE_DECODER[c] for c in token)
        except KeyError:
            return None
    m = _SPM_BYTE.match(token)
    if m:
        return bytes([int(m.group(1), 16)])
    return token.replace("▁", " ").encode("utf-8")


@dataclass(frozen=True)
class TokenizerInfo:
    """What constrained decoding needs from a tokenizer. ``token_bytes[i]`` is None for ids
    that never appear in constrained text (special tokens, holes, ids past the tokenizer)."""

    tokenizer: Any
    vocab_size: int  # the model's logits width (may exceed the tokenizer's size)
    token_bytes: list[bytes | None]
    eos_token_ids: frozenset[int]
    sentinel_id: int = field(init=False)  # fake tokens for regex_text.SENTINEL and END
    end_id: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentinel_id", max(self.vocab_size, len(self.token_bytes)))
        object.__setattr__(self, "end_id", self.sentinel_id + 1)

    @classmethod
    def from_hf(cls, tokenizer: Any, vocab_size: int | None = None,
                eos_token_ids: set[int] | None = None) -> TokenizerInfo:
        vocab: dict[str, int] = tokenizer.get_vocab()
        size = max(vocab.values()) + 1
        if vocab_size is None:
            vocab_size = size
        if vocab_size < size:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer ({size} ids)")
        special = set(getattr(tokenizer, "all_special_ids", []))
        for tid, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if getattr(added, "special", False):
                special.add(tid)
        byte_level = _is_byte_level(tokenizer)
        token_bytes: list[bytes | None] = [None] * size
        for token, tid in vocab.items():
            if tid not in special:
                token_bytes[tid] = token_to_bytes(token, byte_level)
        eos = set(eos_token_ids or ())
        if not eos and tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        return cls(tokenizer, vocab_size, token_bytes, frozenset(eos))

    def outlines_vocabulary(self, only: set[int] | None = None) -> Vocabulary:
        """outlines-core Vocabulary over text tokens, plus the sentinel token (grammar.py).

        ``only`` restricts it to those ids plus every single-byte token. Transitions of a token
        do not depend on the other tokens, so walks over ``only`` match the full index exactly;
        tests use this to build indexes in milliseconds.
        """
        by_bytes: dict[bytes, list[int]] = {}
        for tid, b in enumerate(self.token_bytes):
            if only is not None and tid not in only and (b is None or len(b) != 1):
                continue
            # NOTE: byte 0xF4 leads SENTINEL/END (U+10FFFx); a token containing it could spell
            # them, so such tokens are never allowed (they only encode plane-16 private use).
            if b and _LEAD_F4 not in b:  # empty tokens would loop in place
                by_bytes.setdefault(b, []).append(tid)
        by_bytes.setdefault(SENTINEL.encode(), []).append(self.sentinel_id)
        by_bytes.setdefault(END.encode(), []).append(self.end_id)
        # outlines-core requires an EOS id outside the map; the grammar handles real EOS itself.
        return Vocabulary(self.end_id + 1, by_bytes)

    @cached_property
    def ascii_tokens(self) -> list[tuple[int, str]]:
        """(id, character) of every token whose text is one ASCII character."""
        return [(t, chr(b[0])) for t, b in enumerate(self.token_bytes) if b is not None and len(b) == 1 and b[0] < 0x80]

    @cached_property
    def prefix_index(self) -> tuple[list[bytes], np.ndarray]:
        """Text tokens sorted by their bytes: (bytes, ids as int64); tokens sharing a prefix are
        contiguous. NOTE: ~130 ms at 49k tokens; GrammarCompiler builds it up front."""
        pairs = sorted((b, t) for t, b in enumerate(self.token_bytes) if b)
        return [b for b, _ in pairs], np.array([t for _, t in pairs], dtype=np.int64)

    def extensions(self, token_id: int) -> np.ndarray:
        """Ids of the text tokens whose bytes strictly extend ``token_id``'s (``":`` -> ``":"``)."""
        keys, ids = self.prefix_index
        b = self.token_bytes[token_id] or b""
        lo = bisect.bisect_right(keys, b)  # NOTE: b itself (and duplicates) sort first
        stem = b.rstrip(b"\xff")
        hi = bisect.bisect_left(keys, stem[:-1] + bytes([stem[-1] + 1]), lo) if stem else len(keys)
        return ids[lo:hi]

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode_bytes(self, token_ids: list[int]) -> bytes:
        return b"".join(self.token_bytes[t] or b"" for t in token_ids)
