"""Inputs of pooling requests (embeddings, classification, rerank): texts, token ids or
(query, document) pairs -> token ids and token types, checked against the model's limit and
truncated only when the caller asks."""

from __future__ import annotations

from typing import Any, NamedTuple


class Tokens(NamedTuple):
    ids: list[int]
    types: list[int] | None  # token_type_ids of a sentence pair; None: every token segment 0


class PoolingInputs:
    """limit: the longest input (context length, KV slots and sentence-transformers'
    max_seq_length, whichever is least)."""

    def __init__(self, tokenizer: Any, vocab_size: int, limit: int, limit_reason: str) -> None:
        self.tokenizer, self.vocab_size, self.limit, self.limit_reason = tokenizer, vocab_size, limit, limit_reason

    def from_call(self, prompt: Any, input_ids: Any, truncate: bool) -> tuple[list[Tokens], bool]:
        """Engine.encode's inputs -> (tokens per input, whether the caller passed a list)."""
        if (prompt is None) == (input_ids is None):
            raise ValueError("give exactly one of `prompt` (text) or `input_ids` (token ids)")
        if prompt is not None:
            if isinstance(prompt, str):
                return [self.text(prompt, "prompt", truncate)], False
            if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
                return self.texts(prompt, "prompt", truncate), True
            raise ValueError("`prompt` must be a string or a non-empty list of strings")
        if isinstance(input_ids, list) and input_ids and all(isinstance(x, list) for x in input_ids):
            return [self.ids(x, f"input_ids.{i}", truncate) for i, x in enumerate(input_ids)], True
        if isinstance(input_ids, list):
            return [self.ids(input_ids, "input_ids", truncate)], False
        raise ValueError("`input_ids` must be a list of token ids or a list of such lists")

    def text(self, text: str, field: str, truncate: bool) -> Tokens:
        if not text:
            raise ValueError(f"`{field}` is an empty string: every input needs some text")
        enc = self.tokenizer(text, truncation=truncate, max_length=self.limit if truncate else None)
        return self._checked(Tokens(list(enc["input_ids"]), None), field)

    def texts(self, texts: list[str], field: str, truncate: bool) -> list[Tokens]:
        """Several texts in one tokenizer call (a fast tokenizer encodes a list in parallel)."""
        for i, text in enumerate(texts):
            if not text:
                raise ValueError(f"`{field}.{i}` is an empty string: every input needs some text")
        enc = self.tokenizer(texts, truncation=truncate, max_length=self.limit if truncate else None)
        return [self._checked(Tokens(list(ids), None), f"{field}.{i}") for i, ids in enumerate(enc["input_ids"])]

    def pair(self, query: str, document: str, field: str, truncate: bool) -> Tokens:
        """A cross-encoder's input: the tokenizer's pair template ([CLS] q [SEP] d [SEP] for BERT)
        with its token types; truncation takes tokens from the longer side first."""
        if not query:
            raise ValueError("`query` is an empty string")
        if not document:
            raise ValueError(f"`{field}` is an empty string: every document needs some text")
        enc = self.tokenizer(query, document, truncation=truncate, max_length=self.limit if truncate else None)
        types = enc.get("token_type_ids")
        types = list(types) if types is not None and any(types) else None
        return self._checked(Tokens(list(enc["input_ids"]), types), field)

    def ids(self, ids: list[Any], field: str, truncate: bool) -> Tokens:
        if not ids:
            raise ValueError(f"`{field}` is empty: give at least one token")
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < self.vocab_size for t in ids):
            raise ValueError(f"`{field}` must be integers in [0, {self.vocab_size})")
        return self._checked(Tokens(list(ids[: self.limit] if truncate else ids), None), field)

    def expanded(self, ids: list[int]) -> list[int]:
        """A prompt with its media placeholders expanded, within the limit."""
        if len(ids) > self.limit:
            raise ValueError(f"the prompt with its images/videos is {len(ids)} tokens, past this model's limit of "
                             f"{self.limit} ({self.limit_reason}): use fewer or smaller images")
        return ids

    def _checked(self, tokens: Tokens, field: str) -> Tokens:
        if len(tokens.ids) > self.limit:
            raise ValueError(f"`{field}` has {len(tokens.ids)} tokens, past this model's limit of {self.limit} "
                             f"({self.limit_reason}): shorten it or pass truncate=True")
        return tokens
