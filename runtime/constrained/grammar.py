"""Grammar objects: one shared ``CompiledGrammar`` per regex, one ``Grammar`` per request.

Token-level states come from an outlines-core ``Index`` over ``SENTINEL(regex)END`` (see
regex_text: the sentinel keeps the DFA build linear, END works around delayed match states);
the request starts in the state after the sentinel token, and a state is final when the END
token leads to outlines' final state. Every state's vocab mask is packed at compile time
(state_table.py), so the scheduler thread never asks outlines-core for a token list.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import cached_property

import numpy as np
import torch
from outlines_core import Index

from .errors import GrammarStateError, InvalidRegexError, advance_eos
from .jump_forward import CharCursor, CharFSM, forced_tokens
from .regex_text import END, SENTINEL
from .state_table import MAX_TABLE_BYTES, StateTable
from .vocabulary import TokenizerInfo

MaskKey = tuple[str, int]  # see Grammar.mask_key
FORCED_CACHE = 16384  # states with cached forced tokens per compiled grammar; cleared when full


class CompiledGrammar:
    """Immutable after construction except for caches (lazy mask rows, forced tokens)."""

    def __init__(self, regex: str, info: TokenizerInfo, vocabulary: object | None = None,
                 max_table_bytes: int = MAX_TABLE_BYTES) -> None:
        self.regex = regex
        self.info = info
        try:
            self.index = Index(f"{SENTINEL}({regex}){END}", vocabulary or info.outlines_vocabulary())
        except (ValueError, RuntimeError) as exc:
            raise InvalidRegexError(f"regex {regex[:200]!r} cannot be compiled: {str(exc)[:300]}") from exc
        start = self.index.get_next_state(self.index.get_initial_state(), info.sentinel_id)
        if start is None:
            raise InvalidRegexError(f"regex {regex[:200]!r} matches nothing any token can produce")
        self.start: int = start
        self.table = StateTable(self.index, info, start, max_table_bytes)  # every state's mask
        self._forced: dict[int, list[int]] = {}  # state -> forced tokens

    def grammar(self) -> Grammar:
        """A fresh per-request matcher."""
        return Grammar(self)

    # --- per state ------------------------------------------------------------------------------
    def next_state(self, state: int, token_id: int) -> int | None:
        if token_id >= len(self.info.token_bytes) or self.info.token_bytes[token_id] is None:
            return None
        return self.index.get_next_state(state, token_id)

    def is_final(self, state: int) -> bool:
        return self.table.lookup(state)[1]

    def has_text_tokens(self, state: int) -> bool:
        return self.table.lookup(state)[2]

    def packed_mask(self, state: int) -> np.ndarray:
        """(ceil(vocab/32),) int32, allowed tokens (EOS included where final): bit (t % 32) of
        word t // 32. Shared: do not mutate."""
        return self.table.row(state)

    def allowed_ids(self, state: int) -> list[int]:
        """Every token the grammar allows in ``state`` (EOS included where final), sorted."""
        return np.flatnonzero(self.unpack(self.packed_mask(state))).tolist()

    def blocked_mask(self, state: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(vocab_size,) bool, True where the grammar does NOT allow the token in ``state``."""
        return torch.from_numpy(~self.unpack(self.packed_mask(state))).to(device)

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """(words,) int32 packed row -> (vocab_size,) bool."""
        bits = np.unpackbits(packed.view(np.uint8), count=self.info.vocab_size, bitorder="little")
        return bits.view(bool)

    @cached_property
    def char_fsm(self) -> CharFSM | None:
        """The character DFA behind forced text; None where interegular rejects the regex (no
        forced text then). NOTE: up to ~100 ms; GrammarCompiler builds it on the compile thread."""
        try:
            return CharFSM(self.regex)
        except Exception:
            return None

    def precompute_forced_tokens(self) -> int:
        """Fills the forced-token cache for every state the mask table holds that the text of
        ASCII single-byte tokens reaches, walking the character DFA alongside the token-level one
        (the char state of a token state is the DFA state after the same text). Runs on the
        compile thread, so a state's first visit on the scheduler thread is a lookup, not a
        tokenizer call (~100-300 us). Returns how many states were filled; the rest stay lazy.
        """
        fsm = self.char_fsm
        if fsm is None:
            return 0
        rows = self.table.row_of
        char_of = {self.start: fsm.initial}
        queue = deque([self.start])
        while queue and len(self._forced) < FORCED_CACHE:
            state = queue.popleft()
            char_state = char_of[state]
            self._forced[state] = forced_tokens(self, state, fsm.forced(char_state))
            for token, char in self.info.ascii_tokens:
                nxt = self.index.get_next_state(state, token)
                if nxt is None or nxt in char_of or nxt not in rows:
                    continue
                nxt_char = fsm.step(char_state, char)
                if nxt_char is not None:  # else the regex dialects disagree: leave it lazy
                    char_of[nxt] = nxt_char
                    queue.append(nxt)
        return len(char_of)

    def forced_tokens(self, state: int, forced_text: Callable[[], str]) -> list[int]:
        """``jump_forward.forced_tokens`` of ``state``, cached per state: called every step, and
        a state recurs (each array item, each object in a list) while encoding costs ~20-50 µs.
        ``forced_text()`` gives the state's forced text on a miss. Do not mutate the result.

        NOTE: forced text is a function of the token-level state (which fixes the language of
        continuations), so the first request to reach a state answers for all. Where the regex
        dialects disagree (a request whose text left interegular's DFA has no forced text) that
        first answer wins.
        """
        tokens = self._forced.get(state)
        if tokens is None:
            if len(self._forced) >= FORCED_CACHE:
                self._forced.clear()
            tokens = self._forced[state] = forced_tokens(self, state, forced_text())
        return tokens


class Grammar:
    """Per-request matcher state (outlines-core ``Guide``-like).

    Two views of "allowed": ``accepts_token`` / ``advance`` are the grammar's language (any
    tokenization of a valid text); the decoding mask (``allowed_token_ids``, ``packed_mask``,
    ``fill_bitmask``, ``blocked_mask``) narrows it where the grammar forces text: there only the
    next of ``forced_tokens()`` is allowed, so forced text is always tokenized the tokenizer's
    own way, whether jump-forward appends it in one step or the model decodes it token by token
    (which is what makes greedy outputs the same with and without jump-forward).

    NOTE: ``states[i]`` is the state after ``tokens[:i]``; ``states[0]`` is the start state.
    """

    def __init__(self, compiled: CompiledGrammar) -> None:
        self.compiled = compiled
        self.states: list[int] = [compiled.start]
        self.tokens: list[int] = []
        self.terminated = False  # EOS was advanced
        self._cursor: CharCursor | None = None
        self._forced: tuple[int, list[int]] = (-1, [])  # (position computed at, tokens from there)

    @property
    def state(self) -> int:
        return self.states[-1]

    def accepts_token(self, token_id: int) -> bool:
        if token_id in self.compiled.info.eos_token_ids:
            return self.accepts_eos()
        return not self.terminated and self.compiled.next_state(self.state, token_id) is not None

    def advance(self, token_id: int) -> None:
        """Consume one token; raises GrammarStateError if the grammar does not allow it."""
        if advance_eos(self, token_id):
            return
        nxt = self.compiled.next_state(self.state, token_id)
        if nxt is None:
            raise GrammarStateError(f"token {token_id} is not allowed in state {self.state}")
        self.states.append(nxt)
        self.tokens.append(token_id)

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` text tokens (an advanced EOS is undone first and not counted)."""
        if n < 0 or n > len(self.tokens):
            raise ValueError(f"rollback({n}) but only {len(self.tokens)} tokens were advanced")
        self.terminated = False
        if n:
            del self.states[-n:]
            del self.tokens[-n:]
            self._forced = (-1, [])
            if self._cursor is not None and self._cursor.consumed > len(self.tokens):
                self._cursor.reset()

    # --- the decoding mask ----------------------------------------------------------------------
    def allowed_token_ids(self) -> list[int]:
        if self.terminated:
            return []
        return self.forced_tokens()[:1] or self.compiled.allowed_ids(self.state)

    def mask_key(self) -> MaskKey:
        """What the decoding mask is: ("eos", 0) once terminated, ("token", id) where a token is
        forced, else ("state", state)."""
        if self.terminated:
            return ("eos", 0)
        forced = self.forced_tokens()
        return ("token", forced[0]) if forced else ("state", self.state)

    def packed_mask(self) -> np.ndarray:
        """(ceil(vocab/32),) int32 bits of the decoding mask. Shared: do not mutate."""
        kind, i = self.mask_key()
        table = self.compiled.table
        return table.eos_row if kind == "eos" else table.one_hot(i) if kind == "token" else table.row(i)

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the decoding mask into ``bitmask[row]``: int32 (batch, ceil(vocab/32)), CPU."""
        bitmask[row].copy_(torch.from_numpy(self.packed_mask()))

    def blocked_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(vocab_size,) bool, True where the decoding mask blocks the token."""
        return torch.from_numpy(~self.compiled.unpack(self.packed_mask())).to(device)

    def accepts_eos(self) -> bool:
        """True if the output so far is a complete match (the request may stop here)."""
        return self.compiled.is_final(self.state)

    def is_finished(self) -> bool:
        """True if no more text can follow (EOS was taken, or the only option left is EOS)."""
        return self.terminated or (self.accepts_eos() and not self.compiled.has_text_tokens(self.state))

    def copy(self) -> Grammar:
        other = Grammar(self.compiled)
        other.states = list(self.states)
        other.tokens = list(self.tokens)
        other.terminated = self.terminated
        other._forced = self._forced  # NOTE: never mutated in place, only replaced
        return other

    # --- forced text (jump-forward) -------------------------------------------------------------
    def jump_forward_string(self) -> str:
        """Text every valid continuation starts with ("" if none, or if unknown here)."""
        fsm = self.compiled.char_fsm
        if fsm is None or self.terminated:
            return ""
        if self._cursor is None:
            self._cursor = CharCursor(fsm)
        self._cursor.catch_up(self.tokens, self.compiled.info)
        if self._cursor.state is None or not self._cursor.at_char_boundary():
            return ""
        return fsm.forced(self._cursor.state)

    def forced_tokens(self) -> list[int]:
        """Tokens the decoding mask forces from here on, in order; [] where the model chooses.

        Jump-forward appends them all at once (then one extend step); without it the model
        decodes them one by one under one-hot masks. Either way the same tokens.

        NOTE: a pure function of the tokens so far, so both paths agree: a list is computed
        (``forced_tokens`` in jump_forward.py) where none is pending, i.e. at a position after a
        free choice, and then consumed; a rollback drops it.
        """
        if self.terminated:
            return []
        p = len(self.tokens)
        q, tokens = self._forced
        if 0 <= q <= p and (p == q or p - q < len(tokens)) and self.tokens[q:p] == tokens[: p - q]:
            return tokens[p - q:]
        tokens = self.compiled.forced_tokens(self.state, self.jump_forward_string)
        self._forced = (p, tokens)
        return tokens
