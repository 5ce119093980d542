"""Jump-forward: text the grammar forces, and re-syncing the token sequence after appending it.

Forced text is found on a character-level DFA (interegular) of the same regex: from the current
character state, while exactly one character can follow and the state cannot end, that character
is forced. The token-level index (outlines-core) is not used for this because a forced run of
characters is usually reachable through many different tokens.

Retokenization: appending the forced text as separate tokens would give a token sequence the
model never saw in training (``{"`` + ``name`` vs ``{"name``). So the last few tokens and the
forced text are re-encoded together; the caller drops the tokens that changed and appends the new
ones (the grammar state is rolled back and advanced to match).
"""

from __future__ import annotations

import codecs
from typing import NamedTuple

import interegular
from interegular.fsm import anything_else

from .vocabulary import TokenizerInfo

MAX_FORCED_CHARS = 512


class CharFSM:
    """Character DFA of a regex, with the states that can still reach an accepting state."""

    def __init__(self, regex: str) -> None:
        fsm = interegular.parse_pattern(regex).to_fsm()
        self.initial = fsm.initial
        self.finals = set(fsm.finals)
        self.map = fsm.map
        self.alphabet = fsm.alphabet
        self.chars_of = fsm.alphabet.by_transition
        live = set(self.finals)
        changed = True
        while changed:  # backwards reachability to a final state
            changed = False
            for s, trans in self.map.items():
                if s not in live and any(t in live for t in trans.values()):
                    live.add(s)
                    changed = True
        self.live = live

    def step(self, state: int, char: str) -> int | None:
        symbol = self.alphabet[char] if char in self.alphabet else self.alphabet[anything_else]
        nxt = self.map.get(state, {}).get(symbol)
        return nxt if nxt in self.live else None

    def forced(self, state: int) -> str:
        """The characters every accepted continuation from ``state`` starts with."""
        out: list[str] = []
        while state not in self.finals and len(out) < MAX_FORCED_CHARS:
            moves = [(sym, nxt) for sym, nxt in self.map.get(state, {}).items() if nxt in self.live]
            if len(moves) != 1:
                break
            chars = self.chars_of[moves[0][0]]
            if len(chars) != 1 or chars[0] is anything_else:
                break
            out.append(chars[0])
            state = moves[0][1]
        return "".join(out)


class CharCursor:
    """Character state after the bytes of a grammar's tokens; caught up lazily.

    NOTE: ``state`` is None once the text left the character DFA (regex dialect differences
    between outlines-core and interegular); jump-forward is then off for that request.
    """

    def __init__(self, fsm: CharFSM) -> None:
        self.fsm = fsm
        self.reset()

    def reset(self) -> None:
        self.consumed = 0  # tokens already walked
        self.state: int | None = self.fsm.initial
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def catch_up(self, tokens: list[int], info: TokenizerInfo) -> None:
        if self.consumed > len(tokens):
            self.reset()
        for tid in tokens[self.consumed:]:
            if self.state is None:
                break
            try:
                text = self.decoder.decode(info.token_bytes[tid] or b"")
            except UnicodeDecodeError:
                self.state = None
                break
            for c in text:
                self.state = self.fsm.step(self.state, c) if self.state is not None else None
        self.consumed = len(tokens)

    def at_char_boundary(self) -> bool:
        return not self.decoder.getstate()[0]


class Retokenized(NamedTuple):
    n_drop: int  # tokens to remove from the end of the previous output
    new_ids: list[int]  # tokens to append after removing them


def jump_and_retokenize(prev_ids: list[int], forced: str, info: TokenizerInfo,
                        lookback: int = 8) -> Retokenized | None:
    """Re-encode the last ``lookback`` tokens together with ``forced``.

    The window is widened so it never starts inside a multi-byte UTF-8 character. Returns None
    when the text would not survive the round trip (then the caller should not jump).
    """
    if not forced:
        return Retokenized(0, [])
    k = min(lookback, len(prev_ids))
    while k < len(prev_ids) and _starts_mid_char(info.decode_bytes(prev_ids[-k:])):
        k += 1
    tail = prev_ids[len(prev_ids) - k:]
    tail_bytes = info.decode_bytes(tail)
    try:
        text = tail_bytes.decode("utf-8") + forced
    except UnicodeDecodeError:
        return None
    new = info.encode(text)
    if info.decode_bytes(new) != text.encode("utf-8") or any(info.token_bytes[t] is None for t in new):
        return None
    common = 0
    while common < min(len(tail), len(new)) and tail[common] == new[common]:
        common += 1
    return Retokenized(len(tail) - common, new[common:])


def _starts_mid_char(data: bytes) -> bool:
    return bool(data) and 0x80 <= data[0] <= 0xBF
