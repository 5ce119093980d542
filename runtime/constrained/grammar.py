"""Grammar objects: one shared ``CompiledGrammar`` per regex, one ``Grammar`` per request.

Token-level states come from an outlines-core ``Index`` over ``SENTINEL(regex)END`` (see
regex_text: the sentinel keeps the DFA build linear, END works around delayed match states);
the request starts in the state after the sentinel token, and a state is final when the END
token leads to outlines' final state. Per-state vocab masks are cached on the compiled grammar,
so a state seen before costs one dict lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import torch
from outlines_core import Index

from .errors import GrammarStateError, InvalidRegexError
from .jump_forward import CharCursor, CharFSM, jump_and_retokenize
from .regex_text import END, SENTINEL
from .vocabulary import TokenizerInfo

BIAS_CACHE_STATES = 512  # per compiled grammar: at most ~100 MB of fp32 biases at 49k vocab


class CompiledGrammar:
    """Immutable after construction except for caches (masks, the lazily built char DFA)."""

    def __init__(self, regex: str, info: TokenizerInfo, vocabulary: object | None = None) -> None:
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
        self._blocked: dict[tuple[int, str], torch.Tensor] = {}  # (state, device) -> (vocab,) bool
        self._packed: dict[int, np.ndarray] = {}  # state -> (ceil(vocab/32),) int32
        # (state, device, dtype) -> (vocab,) additive bias, 0 allowed / -inf not; LRU-bounded
        # because each is vocab * 4 bytes (196 KB at 49k).
        self._bias: OrderedDict[tuple[int, str, torch.dtype], torch.Tensor] = OrderedDict()
        self._final: dict[int, bool] = {}
        self._has_text: dict[int, bool] = {}
        self._is_text = np.array([bool(b) for b in info.token_bytes], dtype=bool)  # by token id
        self._char_fsm: CharFSM | None | bool = False  # False: not built yet; None: unavailable
        self._lock = threading.Lock()

    # --- per state ------------------------------------------------------------------------------
    def next_state(self, state: int, token_id: int) -> int | None:
        if token_id >= len(self.info.token_bytes) or self.info.token_bytes[token_id] is None:
            return None
        return self.index.get_next_state(state, token_id)

    def is_final(self, state: int) -> bool:
        final = self._final.get(state)
        if final is None:
            after = self.index.get_next_state(state, self.info.end_id)
            final = self._final[state] = after is not None and self.index.is_final_state(after)
        return final

    def _text_ids(self, state: int) -> np.ndarray:
        """Allowed ids that are text tokens (not special, not holes), as int64, vectorized:
        a state inside a JSON string allows ~49k tokens, which a Python loop takes ~10 ms over."""
        allowed = np.asarray(self.index.get_allowed_tokens(state), dtype=np.int64)
        allowed = allowed[allowed < len(self._is_text)]
        return allowed[self._is_text[allowed]]

    def text_token_ids(self, state: int) -> list[int]:
        return self._text_ids(state).tolist()

    def has_text_tokens(self, state: int) -> bool:
        has = self._has_text.get(state)
        if has is None:
            has = self._has_text[state] = bool(len(self._text_ids(state)))
        return has

    def allowed_ids(self, state: int) -> list[int]:
        eos = sorted(self.info.eos_token_ids) if self.is_final(state) else []
        return sorted(self.text_token_ids(state)) + eos

    def blocked_mask(self, state: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(vocab_size,) bool, True where the token is NOT allowed; cached per state and device."""
        key = (state, str(device))
        mask = self._blocked.get(key)
        if mask is None:
            mask = torch.ones(self.info.vocab_size, dtype=torch.bool)
            mask[torch.from_numpy(self._text_ids(state))] = False
            if self.is_final(state):
                mask[sorted(self.info.eos_token_ids)] = False
            mask = mask.to(device)
            self._blocked[key] = mask
        return mask

    def bias(self, state: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(vocab_size,) 0 / -inf, to ``add_`` to logits.

        NOTE: an add over the row is ~10 µs for 49k on one CPU core; ``masked_fill_`` with a
        bool mask measured ~20x slower (it is not vectorized for scattered masks).
        """
        key = (state, str(device), dtype)
        bias = self._bias.get(key)
        if bias is None:
            blocked = self.blocked_mask(state)
            bias = torch.zeros(self.info.vocab_size, dtype=dtype).masked_fill_(blocked, float("-inf"))
            bias = bias.to(device)
            self._bias[key] = bias
            if len(self._bias) > BIAS_CACHE_STATES:
                self._bias.popitem(last=False)
        else:
            self._bias.move_to_end(key)
        return bias

    def packed_mask(self, state: int) -> np.ndarray:
        """Allowed tokens as a little-endian bitmask: bit (t % 32) of word t // 32."""
        packed = self._packed.get(state)
        if packed is None:
            allowed = ~self.blocked_mask(state).numpy()
            words = (self.info.vocab_size + 31) // 32
            bits = np.zeros(words * 32, dtype=bool)
            bits[: allowed.size] = allowed
            packed = np.packbits(bits, bitorder="little").view(np.int32)
            self._packed[state] = packed
        return packed

    def char_fsm(self) -> CharFSM | None:
        if self._char_fsm is False:
            with self._lock:
                if self._char_fsm is False:
                    try:
                        self._char_fsm = CharFSM(self.regex)
                    except Exception:  # interegular rejects some syntax: no jump-forward then
                        self._char_fsm = None
        return self._char_fsm  # type: ignore[return-value]


class JumpForward(NamedTuple):
    n_rollback: int  # output tokens to drop (their KV too)
    token_ids: list[int]  # tokens to append after dropping
    text: str  # the forced text


class Grammar:
    """Per-request matcher state (outlines-core ``Guide``-like).

    NOTE: ``states[i]`` is the state after ``tokens[:i]``; ``states[0]`` is the start state.
    """

    def __init__(self, compiled: CompiledGrammar) -> None:
        self.compiled = compiled
        self.states: list[int] = [compiled.start]
        self.tokens: list[int] = []
        self.terminated = False  # EOS was advanced
        self._cursor: CharCursor | None = None

    @property
    def state(self) -> int:
        return self.states[-1]

    def accepts_token(self, token_id: int) -> bool:
        if token_id in self.compiled.info.eos_token_ids:
            return self.accepts_eos()
        return not self.terminated and self.compiled.next_state(self.state, token_id) is not None

    def advance(self, token_id: int) -> None:
        """Consume one token; raises GrammarStateError if the grammar does not allow it."""
        if self.terminated:
            raise GrammarStateError("advance() after EOS; the request is finished")
        if token_id in self.compiled.info.eos_token_ids:
            if not self.accepts_eos():
                raise GrammarStateError(f"EOS token {token_id} before the grammar can end")
            self.terminated = True
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

    def allowed_token_ids(self) -> list[int]:
        return [] if self.terminated else self.compiled.allowed_ids(self.state)

    def blocked_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return self.compiled.blocked_mask(self.state, device)

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed set into ``bitmask[row]``: int32 (batch, ceil(vocab/32)), CPU."""
        bitmask[row].copy_(torch.from_numpy(self.compiled.packed_mask(self.state)))

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
        return other

    # --- jump-forward -------------------------------------------------------------------------
    def jump_forward_string(self) -> str:
        """Text every valid continuation starts with ("" if none, or if unknown here)."""
        fsm = self.compiled.char_fsm()
        if fsm is None or self.terminated:
            return ""
        if self._cursor is None:
            self._cursor = CharCursor(fsm)
        self._cursor.catch_up(self.tokens, self.compiled.info)
        if self._cursor.state is None or not self._cursor.at_char_boundary():
            return ""
        return fsm.forced(self._cursor.state)

    def jump_forward(self, lookback: int = 8) -> JumpForward | None:
        """Append the forced text, retokenized with the last tokens; None if nothing is forced.

        Mutates the grammar (rollback + advance). The caller mirrors it on the request: drop
        ``n_rollback`` output tokens, then append ``token_ids``.
        """
        forced = self.jump_forward_string()
        if not forced:
            return None
        retok = jump_and_retokenize(self.tokens, forced, self.compiled.info, lookback)
        if retok is None or not retok.new_ids:
            return None
        dropped = self.tokens[len(self.tokens) - retok.n_drop:]
        self.rollback(retok.n_drop)
        for i, tid in enumerate(retok.new_ids):
            if not self.accepts_token(tid) or tid in self.compiled.info.eos_token_ids:
                self.rollback(i)  # NOTE: the regex dialects disagreed; restore and skip the jump
                for t in dropped:
                    self.advance(t)
                return None
            self.advance(tid)
        return JumpForward(retok.n_drop, retok.new_ids, forced)
