"""Grammars through llguidance: EBNF (GBNF, llama.cpp's dialect), Lark, and structural tags.

Why llguidance and not xgrammar, and why JSON schemas stay on our own path: docs/grammars.md.

``EngineCompiled`` is one validated grammar (shared, cached by GrammarCompiler); ``EngineGrammar``
is a request's matcher with the same surface as grammar.Grammar (advance, rollback, the decoding
mask, forced tokens), so the scheduler, mask.py and jump-forward take either.

Forced tokens come from llguidance's fast-forward tokens (the tokenizer's own split of the text
the grammar forces, without a last token that could merge with what follows); as with regexes
the decoding mask at a forced position allows only the next forced token, so greedy outputs are
the same with and without jump-forward.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import torch

from .errors import GrammarStateError, InvalidGrammarError, advance_eos
from .vocabulary import TokenizerInfo

_SERIAL = itertools.count()  # mask keys of computed masks: each one new (no state ids to share)
_TOKENIZERS: dict[int, llguidance.LLTokenizer] = {}
_TOKENIZERS_LOCK = threading.Lock()


def ll_tokenizer(info: TokenizerInfo) -> llguidance.LLTokenizer:
    """llguidance's view of the tokenizer, built once per TokenizerInfo (~1 s at 49k tokens)."""
    with _TOKENIZERS_LOCK:
        tok = _TOKENIZERS.get(id(info))
        if tok is None:
            eos = sorted(info.eos_token_ids) or None
            tok = _TOKENIZERS[id(info)] = llguidance.hf.from_tokenizer(info.tokenizer, n_vocab=info.vocab_size,
                                                                       eos_token=eos)
        return tok


def grammar_text(kind: str, key: str) -> str:
    """llguidance's grammar text for one of our spec kinds."""
    if kind == "ebnf":
        return llguidance.grammar_from("grammar", key)  # GBNF or Lark, told apart by llguidance
    if kind == "lark":
        return llguidance.grammar_from("lark", key)
    if kind == "structural_tag":  # key: the tag's JSON (structural_tag.py makes it Lark)
        from .structural_tag import structural_tag_grammar

        return llguidance.grammar_from("lark", structural_tag_grammar(key))
    raise ValueError(f"unknown engine grammar kind {kind!r}")


def check_grammar(kind: str, key: str) -> str:
    """Raise InvalidGrammarError (naming the field) if llguidance rejects the grammar; no tokenizer."""
    try:
        text = grammar_text(kind, key)
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(text)
    except InvalidGrammarError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise InvalidGrammarError(f"{kind} grammar does not parse: {str(exc)[:400]}; fix the grammar") from None
    if is_error:
        raise InvalidGrammarError(f"{kind} grammar does not parse: {messages[0][:400]}; fix the grammar")
    return text


class EngineCompiled:
    """One grammar, validated against the tokenizer. Immutable; weakly referenced by mask.py."""

    def __init__(self, kind: str, key: str, info: TokenizerInfo) -> None:
        self.kind, self.key, self.info = kind, key, info
        self.text = check_grammar(kind, key)
        self.tokenizer = ll_tokenizer(info)
        probe = self.new_matcher()
        if probe.is_error():
            raise InvalidGrammarError(f"{kind} grammar cannot be used: {probe.get_error()[:400]}")
        self.words = (info.vocab_size + 31) // 32
        self.table = _NoTable()  # GrammarCompiler counts mask-table bytes; masks are computed per step

    def new_matcher(self) -> llguidance.LLMatcher:
        return llguidance.LLMatcher(self.tokenizer, self.text, log_level=0)

    def grammar(self) -> EngineGrammar:
        return EngineGrammar(self)


class _NoTable:
    nbytes = 0


class EngineGrammar:
    """Per-request matcher over llguidance; the surface of grammar.Grammar.

    NOTE: ``tokens`` are the text tokens advanced (EOS not counted), as in Grammar.
    """

    def __init__(self, compiled: EngineCompiled, matcher: llguidance.LLMatcher | None = None) -> None:
        self.compiled = compiled
        self.matcher = matcher or compiled.new_matcher()
        self.tokens: list[int] = []
        self.terminated = False
        self._forced: tuple[int, list[int]] = (-1, [])  # (position computed at, tokens from there)
        self._mask: tuple[int, int, np.ndarray | None] = (-1, -1, None)  # (position, serial, bits)

    def accepts_token(self, token_id: int) -> bool:
        if token_id in self.compiled.info.eos_token_ids:
            return self.accepts_eos()
        return not self.terminated and self.matcher.validate_tokens([token_id]) == 1

    def advance(self, token_id: int) -> None:
        """Consume one token; raises GrammarStateError if the grammar does not allow it."""
        if advance_eos(self, token_id):
            return
        if self.matcher.validate_tokens([token_id]) != 1 or not self.matcher.consume_token(token_id):
            raise GrammarStateError(f"token {token_id} is not allowed here: {self.matcher.get_error()[:200]}")
        self.tokens.append(token_id)

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` text tokens (an advanced EOS is undone first and not counted)."""
        if n < 0 or n > len(self.tokens):
            raise ValueError(f"rollback({n}) but only {len(self.tokens)} tokens were advanced")
        self.terminated = False
        if n:
            self.matcher.rollback(n)
            del self.tokens[-n:]
            self._forced = (-1, [])

    def accepts_eos(self) -> bool:
        return self.matcher.is_accepting()

    def is_finished(self) -> bool:
        return self.terminated or self.matcher.is_stopped()

    def copy(self) -> EngineGrammar:
        other = EngineGrammar(self.compiled, self.matcher.deep_copy())
        other.tokens, other.terminated, other._forced = list(self.tokens), self.terminated, self._forced
        return other

    # --- the decoding mask ----------------------------------------------------------------------
    def _bits(self) -> tuple[int, np.ndarray]:
        """(serial, (words,) int32 bits) of the grammar's own mask here, computed once a position."""
        p = len(self.tokens)
        if self._mask[0] != p or self._mask[2] is None:
            bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.int32)
            row = np.zeros(self.compiled.words, dtype=np.int32)
            row[: min(len(bits), len(row))] = bits[: len(row)]
            self._mask = (p, next(_SERIAL), row)
        return self._mask[1], self._mask[2]  # type: ignore[return-value]

    def mask_key(self) -> tuple[str, int]:
        if self.terminated:
            return ("eos", 0)
        forced = self.forced_tokens()
        return ("token", forced[0]) if forced else ("mask", self._bits()[0])

    def packed_mask(self) -> np.ndarray:
        """(ceil(vocab/32),) int32 bits of the decoding mask (EOS included where accepting)."""
        kind, i = self.mask_key()
        if kind == "mask":
            return self._bits()[1]
        row = np.zeros(self.compiled.words, dtype=np.int32)
        ids = sorted(self.compiled.info.eos_token_ids) if kind == "eos" else [i]
        for t in ids:
            row[t // 32] |= np.int32(np.uint32(1 << (t % 32)).view(np.int32))
        return row

    def allowed_token_ids(self) -> list[int]:
        bits = np.unpackbits(self.packed_mask().view(np.uint8), count=self.compiled.info.vocab_size,
                             bitorder="little")
        return np.flatnonzero(bits).tolist()

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        bitmask[row].copy_(torch.from_numpy(self.packed_mask()))

    def blocked_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        bits = np.unpackbits(self.packed_mask().view(np.uint8), count=self.compiled.info.vocab_size,
                             bitorder="little")
        return torch.from_numpy(bits == 0).to(device)

    # --- forced text (jump-forward) -------------------------------------------------------------
    def forced_tokens(self) -> list[int]:
        """Tokens the grammar forces from here on; [] where the model chooses. A pure function
        of the tokens so far (see grammar.Grammar.forced_tokens)."""
        if self.terminated or self.matcher.is_stopped():
            return []
        p = len(self.tokens)
        q, tokens = self._forced
        if 0 <= q <= p and (p == q or p - q < len(tokens)) and self.tokens[q:p] == tokens[: p - q]:
            return tokens[p - q:]
        tokens = [t for t in self.matcher.compute_ff_tokens() if t not in self.compiled.info.eos_token_ids]
        self._forced = (p, tokens)
        return tokens


def compile_engine_grammar(kind: str, key: Any, info: TokenizerInfo) -> EngineCompiled:
    return EngineCompiled(kind, key, info)
