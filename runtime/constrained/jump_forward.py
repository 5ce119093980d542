"""Jump-forward: text the grammar forces, and re-syncing the token sequence after appending it.

Forced text is found on a character-level DFA (interegular) of the same regex: from the current
character state, while exactly one character can follow and the state cannot end, that character
is forced. The token-level index (outlines-core) is not used for this because a forced run of
characters is usually reachable through many different tokens.

Tokenization: forced text is always tokenized the tokenizer's own way (``encode(forced)``), and
the decoding mask allows only those tokens at forced positions (grammar.Grammar), so the tokens
are the same whether jump-forward appends them in one step or the model decodes them one by one.
Greedy decoding with and without jump-forward then sees the same token sequence.

Why not let the model split forced text as it likes and re-encode the boundary: without the
narrowed mask a small model often prefers splits the tokenizer never makes (``{`` + ``"``
instead of ``{"``, ``":`` + ``"`` instead of ``":"``: the token boundaries of pretty-printed
JSON, whose spaces the grammar forbids), and any jumped tokenization then differs from what
decoding would have produced; on SmolLM2-135M 9 of 20 schemas gave different JSON that way.
The one place the tokenizer's split depends on the text after the forced run, its last token
(``":`` or ``":"``), is left to the model when the grammar allows a longer token there.
"""

from __future__ import annotations

import codecs
from typing import Protocol

import interegular
from interegular.fsm import anything_else

from .state_table import StateTable
from .vocabulary import TokenizerInfo

MAX_FORCED_CHARS = 512


class TokenLevel(Protocol):
    """What forced_tokens needs from grammar.CompiledGrammar (a Protocol, so this module does not
    import grammar, which imports it)."""

    info: TokenizerInfo
    table: StateTable

    def next_state(self, state: int, token_id: int) -> int | None: ...


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
        self._forced: dict[int, str] = {}  # char state -> forced text, filled on first use

    def step(self, state: int, char: str) -> int | None:
        symbol = self.alphabet[char] if char in self.alphabet else self.alphabet[anything_else]
        nxt = self.map.get(state, {}).get(symbol)
        return nxt if nxt in self.live else None

    def forced(self, state: int) -> str:
        """The characters every accepted continuation from ``state`` starts with."""
        text = self._forced.get(state)
        if text is None:
            text = self._forced[state] = self._walk_forced(state)
        return text

    def _walk_forced(self, state: int) -> str:
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


def forced_tokens(compiled: TokenLevel, state: int, forced: str) -> list[int]:
    """The tokenizer's own tokens for the ``forced`` text from token-level ``state``, without a
    last token that could merge with what follows; [] if none (or if the tokens do not walk).

    The last token is left to the model when a longer token starting with the same bytes is
    allowed where it starts (``":`` vs ``":"``, ``[`` vs ``[1``): which one the text uses depends
    on the free text after it.
    """
    info = compiled.info
    if not forced:
        return []
    ids = info.encode(forced)
    if info.decode_bytes(ids) != forced.encode("utf-8"):
        return []
    before = state  # state before the last token
    for t in ids:
        nxt = compiled.next_state(state, t)
        if nxt is None or t in info.eos_token_ids:  # NOTE: the regex dialects disagreed
            return []
        before, state = state, nxt
    if compiled.table.allows_any(before, info.extensions(ids[-1])):
        ids.pop()
    return ids
