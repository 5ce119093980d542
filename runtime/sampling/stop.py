"""Stop conditions on the decoded text: stop strings (matched across token boundaries) and stop
regexes. Also tells how much of the text's tail to hold back while streaming, so a streamed
prefix never shows text that a stop string later trims."""

from __future__ import annotations

import re
from typing import NamedTuple


class StopMatch(NamedTuple):
    start: int  # where the matched text begins in the output text
    matched: str


class StopChecker:
    def __init__(self, stop: list[str], stop_regex: list[str]) -> None:
        self.stop = stop
        self.regexes = [re.compile(p) for p in stop_regex]
        self.longest = max((len(s) for s in stop), default=0)

    def __bool__(self) -> bool:
        return bool(self.stop or self.regexes)

    def find(self, text: str, new_chars: int) -> StopMatch | None:
        """The earliest stop match that involves the last `new_chars` characters of `text`."""
        best: StopMatch | None = None
        window_start = max(0, len(text) - new_chars - self.longest + 1)
        for s in self.stop:
            i = text.find(s, window_start)
            if i >= 0 and (best is None or i < best.start):
                best = StopMatch(i, s)
        for r in self.regexes:
            m = r.search(text)
            if m and (best is None or m.start() < best.start):
                best = StopMatch(m.start(), m.group(0))
        return best

    def holdback(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of a stop string."""
        for n in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-n:]
            if any(s.startswith(tail) for s in self.stop):
                return n
        return 0
