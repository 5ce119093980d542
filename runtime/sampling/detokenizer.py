"""Incremental detokenization: text grows token by token without broken UTF-8.

A piece is released only when decoding it no longer ends in U+FFFD (an incomplete multi-byte
character); a few prompt tokens give the first output tokens their left context, so tokenizers
that drop a leading space (SentencePiece) decode the same as in a full decode.
"""

from __future__ import annotations

from typing import Any

_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: list[int], skip_special_tokens: bool = True,
                 spaces_between_special_tokens: bool = True, drop: str = "") -> None:
        """``drop``: text the output starts with that is not its own (token healing's backed-off
        token, already in the prompt): left out of ``text``."""
        self.tokenizer = tokenizer
        self.kwargs = {"skip_special_tokens": skip_special_tokens,
                       "spaces_between_special_tokens": spaces_between_special_tokens}
        self.ids: list[int] = list(prompt_ids[-_CONTEXT_TOKENS:])
        self.context = len(self.ids)
        self.surround = 0  # ids[surround:read] is decoded context, already emitted
        self.read = len(self.ids)
        self.text = ""
        self.drop, self.to_drop = drop, drop

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, **self.kwargs)

    def add(self, token_id: int) -> str:
        """Appends one token; returns the newly released text (possibly empty)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.surround : self.read])
        after = self._decode(self.ids[self.surround :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            delta = self._dropped(after[len(before) :])
            self.text += delta
            self.surround, self.read = self.read, len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """At the end: releases whatever is pending, replacement characters included."""
        before = self._decode(self.ids[self.surround : self.read])
        after = self._decode(self.ids[self.surround :])
        delta = self._dropped(after[len(before) :]) if len(after) > len(before) else ""
        self.text += delta
        self.surround = self.read = len(self.ids)
        return delta

    def reset(self, output_ids: list[int]) -> None:
        """Re-reads the whole output after tokens were replaced (jump-forward retokenization)."""
        context = self.ids[: self.context]
        self.ids = context + list(output_ids)
        text = self._decode(self.ids)[len(self._decode(context)) :]
        self.to_drop = ""
        self.text = text[len(self.drop):] if self.drop and text.startswith(self.drop) else text
        self.read = len(self.ids)
        self.surround = max(self.context, self.read - 1)  # one token of left context for the next piece

    def _dropped(self, delta: str) -> str:
        """``delta`` without ``drop`` at its start, once: the first released piece holds the whole
        first token, whose text starts with it."""
        drop, self.to_drop = self.to_drop, ""
        return delta[len(drop):] if drop and delta.startswith(drop) else delta
