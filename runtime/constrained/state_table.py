"""``StateTable``: every token-level state's allowed-token bitmask, built once at compile time.

The scheduler needs one mask per constrained row per step; asking outlines-core for a state's
allowed tokens converts up to ~49k ids to a Python list (~1-3 ms), too slow for the first visit
of a state on the scheduler thread. So the compile thread walks all states once and packs each
one's allowed set into a row; per step the mask is a row lookup (see mask.py for the unpack).

Layout::

    rows:     (n_states, words) int32, words = ceil(vocab_size / 32)
              bit (t % 32) of word t // 32 is set  <=>  token t is allowed
              (text tokens the index allows, plus the EOS ids where the state is final)
    final:    (n_states,) bool   the output so far is a complete match (END can follow)
    has_text: (n_states,) bool   some text token can follow
    row_of:   {state id: row}    outlines-core state ids are sparse (premultiplied by a stride)

Finding the states: outlines-core has no cheap "list states" call (``get_transitions()`` builds
a Python dict of every transition: ~650 ms and hundreds of MB for a 3.6M-transition index). But
a token's end state is the byte DFA's state after its bytes, so when every byte has a
single-byte token every reachable state is reachable through single-byte tokens: a breadth-first
walk over those (<= 256 ``get_next_state`` calls per state) finds them all.

Memory: ``words * 4`` bytes per state (6 KB at 49k vocab). A grammar with more states than
``max_bytes`` allows keeps the first ones in breadth-first order (the ones nearest the start,
visited most) and computes the others lazily on first visit, keeping at most ``LAZY_ROWS`` of
them. A state the walk cannot find (a tokenizer missing some single-byte tokens) takes the same
lazy path, so the table is an optimization only, never a correctness condition.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np
from outlines_core import Index

from .vocabulary import TokenizerInfo

MAX_TABLE_BYTES = 64 << 20  # per compiled grammar: ~10.9k states at 49k vocab
LAZY_ROWS = 1024  # rows kept for states past the table (LRU)


class StateTable:
    """Immutable after construction except for the lazy-row cache (scheduler thread only)."""

    def __init__(self, index: Index, info: TokenizerInfo, start: int,
                 max_bytes: int = MAX_TABLE_BYTES) -> None:
        self.index, self.info = index, info
        self.words = (info.vocab_size + 31) // 32
        self._text = np.zeros(self.words * 32, dtype=bool)  # by token id: a text token
        self._text[: len(info.token_bytes)] = [b is not None for b in info.token_bytes]
        self._eos = np.array(sorted(info.eos_token_ids), dtype=np.int64)
        single = [t for t, b in enumerate(info.token_bytes) if b is not None and len(b) == 1]
        self._single = np.zeros(self.words * 32, dtype=bool)
        self._single[single] = True
        self.eos_row = self._pack(self._eos)  # after EOS: only EOS again
        self._lazy: OrderedDict[int, tuple[np.ndarray, bool, bool]] = OrderedDict()

        cap = max(1, max_bytes // (self.words * 4))
        rows: list[np.ndarray] = []
        final: list[bool] = []
        has_text: list[bool] = []
        self.row_of: dict[int, int] = {}
        self.complete = True  # every state found by the walk has a row
        queue = deque([start])
        seen = {start}
        while queue:
            if len(rows) == cap:
                self.complete = False
                break
            state = queue.popleft()
            row, is_final, text, ids = self._compute(state)
            self.row_of[state] = len(rows)
            rows.append(row)
            final.append(is_final)
            has_text.append(text)
            for t in ids[self._single[ids]].tolist():
                nxt = index.get_next_state(state, t)
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        self.rows = np.stack(rows)  # (n_states, words) int32
        self.final = np.array(final, dtype=bool)
        self.has_text = np.array(has_text, dtype=bool)

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes

    def one_hot(self, token_id: int) -> np.ndarray:
        """Packed row allowing only ``token_id`` (a forced token, see Grammar.forced_tokens)."""
        row = np.zeros(self.words, dtype=np.uint32)
        row[token_id >> 5] = 1 << (token_id & 31)
        return row.view(np.int32)

    def allows_any(self, state: int, ids: np.ndarray) -> bool:
        """Whether ``state`` allows any of ``ids`` (int64)."""
        row = self.row(state)
        return bool(((row[ids >> 5] >> (ids & 31)) & 1).any())

    def row(self, state: int) -> np.ndarray:
        """Packed row (words,) int32 of ``state``; the per-step fast path. Do not mutate."""
        i = self.row_of.get(state)
        return self.rows[i] if i is not None else self.lookup(state)[0]

    def lookup(self, state: int) -> tuple[np.ndarray, bool, bool]:
        """(packed row (words,) int32, final, has_text) of ``state``; do not mutate the row."""
        i = self.row_of.get(state)
        if i is not None:
            return self.rows[i], bool(self.final[i]), bool(self.has_text[i])
        entry = self._lazy.get(state)
        if entry is None:
            row, is_final, text, _ = self._compute(state)
            entry = self._lazy[state] = (row, is_final, text)
            if len(self._lazy) > LAZY_ROWS:
                self._lazy.popitem(last=False)
        else:
            self._lazy.move_to_end(state)
        return entry

    def _compute(self, state: int) -> tuple[np.ndarray, bool, bool, np.ndarray]:
        """-> (packed row, final, has_text, allowed text ids as int64)."""
        allowed = np.asarray(self.index.get_allowed_tokens(state) or (), dtype=np.int64)
        # NOTE: drops the sentinel/END ids and outlines' own EOS id (all >= len(token_bytes))
        allowed = allowed[allowed < len(self.info.token_bytes)]
        ids = allowed[self._text[allowed]]
        after = self.index.get_next_state(state, self.info.end_id)
        is_final = after is not None and self.index.is_final_state(after)
        row = self._pack(np.concatenate([ids, self._eos]) if is_final else ids)
        return row, is_final, bool(len(ids)), ids

    def _pack(self, ids: np.ndarray) -> np.ndarray:
        bits = np.zeros(self.words * 32, dtype=bool)
        bits[ids] = True
        return np.packbits(bits, bitorder="little").view(np.int32)
