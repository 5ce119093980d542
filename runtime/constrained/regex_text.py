"""Building regex source text that outlines-core (Rust ``regex``), Python ``re`` and interegular
all read the same way.

Conventions used by every regex this package generates:
- a pattern is a ``str``; ``None`` stands for the EMPTY language (matches nothing), so callers
  can combine sub-results without special-casing unsatisfiable schemas;
- groups are plain ``( )`` (interegular has no ``(?:``); non-ASCII characters are written raw,
  control characters as ``\\xHH`` (interegular has no ``\\u``);
- the sentinel character (see ``grammar.py``) never appears in a generated class, which keeps
  outlines-core's unanchored DFA small.
"""

from __future__ import annotations

from collections.abc import Iterable

Pattern = str | None  # None: the empty language

# NOTE: U+10FFFF is a noncharacter; no tokenizer produces it. outlines-core determinizes an
# unanchored DFA (``.*R``), which is exponential for counted repeats like ``"[ -~]{20}"``.
# Compiling ``SENTINEL + R`` instead keeps it linear as long as R's language excludes SENTINEL.
SENTINEL = "\U0010ffff"
# NOTE: outlines-core 0.2.14 drops a token whose end state is a (one-byte-delayed) match state
# that is not final, e.g. "." after "3" in ``[0-9]*\.?[0-9]+``. Compiling ``(R)END`` means no
# state inside R is a match state; "R is complete here" is then "END can follow" (grammar.py).
END = "\U0010fffe"

_META = set("\\.+*?()|[]{}^$")


def _char(c: str, in_class: bool) -> str:
    if ord(c) < 0x20 or c == "\x7f":
        return f"\\x{ord(c):02x}"
    if in_class and not c.isalnum() and c.isascii() and c != " ":
        return "\\" + c
    if not in_class and c in _META:
        return "\\" + c
    return c


def escape(text: str) -> str:
    """A regex matching exactly ``text``."""
    return "".join(_char(c, in_class=False) for c in text)


def char_class(chars: Iterable[str], negated: bool = False) -> str:
    """``[...]`` over single characters (each escaped); ``negated`` gives ``[^...]``."""
    body = "".join(_char(c, in_class=True) for c in sorted(set(chars)))
    return f"[{'^' if negated else ''}{body}]"


def alt(parts: Iterable[Pattern]) -> Pattern:
    """Alternation; empty-language parts drop out, duplicates collapse (order kept)."""
    kept = list(dict.fromkeys(p for p in parts if p is not None))
    if not kept:
        return None
    if "" in kept and len(kept) > 1:  # written as ``(a|b)?``, not ``(|a|b)``
        return opt(alt(p for p in kept if p))
    if len(kept) == 1:
        return kept[0]
    return "(" + "|".join(kept) + ")"


def seq(*parts: Pattern) -> Pattern:
    """Concatenation; empty language if any part is."""
    if any(p is None for p in parts):
        return None
    return "".join(p for p in parts if p)


def opt(part: Pattern) -> str:
    return "" if not part else f"({part})?"


def repeat(part: Pattern, lo: int, hi: int | None) -> Pattern:
    """``part`` repeated lo..hi times (hi None: unbounded)."""
    if hi is not None and hi < lo:
        return None
    if part is None:
        return "" if lo == 0 else None
    if part == "" or hi == 0:
        return ""
    if (lo, hi) == (1, 1):
        return part
    if (lo, hi) == (0, 1):
        return f"({part})?"
    if hi is None:
        return f"({part})*" if lo == 0 else f"({part})+" if lo == 1 else f"({part}){{{lo},}}"
    return f"({part}){{{lo}}}" if lo == hi else f"({part}){{{lo},{hi}}}"


# --- JSON string units: each matches the encoding of exactly ONE code point -------------------
# (so {m,n} counts characters the way JSON Schema's minLength/maxLength do).
_HEX = "[0-9a-fA-F]"
RAW_STRING_CHAR = "[^\"\\\\\\x00-\\x1f" + SENTINEL + END + "]"
_NON_SURROGATE = f"([0-9a-cA-CefEF]{_HEX}{{3}}|[dD][0-7]{_HEX}{{2}})"
_SURROGATE_PAIR = f"[dD][89abAB]{_HEX}{{2}}\\\\u[dD][c-fC-F]{_HEX}{{2}}"
ESCAPED_STRING_CHAR = f'\\\\(["\\\\/bfnrt]|u({_NON_SURROGATE}|{_SURROGATE_PAIR}))'
STRING_CHAR = f"({RAW_STRING_CHAR}|{ESCAPED_STRING_CHAR})"
