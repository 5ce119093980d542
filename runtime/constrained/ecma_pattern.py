"""Translate a JSON Schema ``pattern`` (ECMA-262 syntax) into a regex over JSON string CONTENT.

The pattern describes the decoded string, but the grammar matches its JSON encoding, so every
character class becomes the set of encodings of its characters: raw UTF-8 where JSON allows it,
escapes (``\\"``, ``\\\\``, ``\\n``, ``\\u001f``) for the characters JSON must escape. Only
encodings of characters IN the class are produced (never a superset), so a string accepted by
the grammar always satisfies the pattern. Lookarounds, back-references and flags are rejected.
Patterns are unanchored in JSON Schema: a missing ``^``/``$`` becomes ``(any char)*``.
"""

from __future__ import annotations

import re

from .errors import UnsupportedSchemaError
from .regex_text import END, SENTINEL, STRING_CHAR, Pattern, alt, repeat, seq

try:  # Python >= 3.11
    from re import _constants as sre_c  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as sre_c  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

Ranges = list[tuple[int, int]]  # inclusive code point ranges

_SHORT_ESCAPES = {'"': '\\\\"', "\\": "\\\\\\\\", "\b": "\\\\b", "\f": "\\\\f", "\n": "\\\\n",
                  "\r": "\\\\r", "\t": "\\\\t"}
_MUST_ESCAPE = [0x22, 0x5C, *range(0x20)]  # '"', '\\', control characters
_DIGIT: Ranges = [(0x30, 0x39)]
_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE: Ranges = [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
                  (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
                  (0xFEFF, 0xFEFF)]
_LINE_TERMINATORS: Ranges = [(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]
_CATEGORIES = {
    sre_c.CATEGORY_DIGIT: (_DIGIT, False), sre_c.CATEGORY_NOT_DIGIT: (_DIGIT, True),
    sre_c.CATEGORY_WORD: (_WORD, False), sre_c.CATEGORY_NOT_WORD: (_WORD, True),
    sre_c.CATEGORY_SPACE: (_SPACE, False), sre_c.CATEGORY_NOT_SPACE: (_SPACE, True),
}


def _in(c: int, ranges: Ranges) -> bool:
    return any(lo <= c <= hi for lo, hi in ranges)


def _class_char(c: int) -> str:
    ch = chr(c)
    if c < 0x20 or c == 0x7F:
        return f"\\x{c:02x}"
    return "\\" + ch if ch.isascii() and not ch.isalnum() and ch != " " else ch


def _escape_of(c: int) -> str:
    return _SHORT_ESCAPES.get(chr(c), f"\\\\u{c:04x}")


def _class_body(ranges: Ranges) -> str:
    return "".join(
        _class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}" for lo, hi in ranges
    )


def charset(ranges: Ranges, negated: bool) -> Pattern:
    """JSON encodings of the characters in (or, negated, not in) ``ranges``."""
    escaped = [_escape_of(c) for c in _MUST_ESCAPE if _in(c, ranges) != negated]
    if negated:
        raw: Pattern = f"[^{_class_body(ranges)}\"\\\\\\x00-\\x1f{SENTINEL}{END}]"
    else:  # only characters JSON allows raw may appear in the raw class
        safe = _split_out(ranges, _MUST_ESCAPE)
        raw = f"[{_class_body(safe)}]" if safe else None
    return alt([raw, *escaped])


def _split_out(ranges: Ranges, remove: list[int]) -> Ranges:
    out: Ranges = []
    for lo, hi in ranges:
        start = lo
        for c in sorted(x for x in remove if lo <= x <= hi):
            if start <= c - 1:
                out.append((start, c - 1))
            start = c + 1
        if start <= hi:
            out.append((start, hi))
    return out


class _Translator:
    def __init__(self, pointer: str) -> None:
        self.pointer = pointer

    def fail(self, what: str) -> UnsupportedSchemaError:
        return UnsupportedSchemaError("pattern", self.pointer, what)

    def items(self, items: list) -> Pattern:
        return seq(*[self.node(op, av) for op, av in items]) if items else ""

    def node(self, op, av) -> Pattern:  # noqa: C901 - one branch per regex construct
        if op is sre_c.LITERAL:
            return charset([(av, av)], False)
        if op is sre_c.NOT_LITERAL:
            return charset([(av, av)], True)
        if op is sre_c.ANY:
            return charset(_LINE_TERMINATORS, True)
        if op is sre_c.IN:
            return self.in_set(av)
        if op is sre_c.BRANCH:
            return alt(self.items(list(branch)) for branch in av[1])
        if op is sre_c.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                raise self.fail("inline flags")
            return self.items(list(sub))
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, hi, sub = av
            return repeat(self.items(list(sub)), lo, None if hi is sre_c.MAXREPEAT else hi)
        if op is sre_c.AT:
            raise self.fail("'^' or '$' inside the pattern")
        raise self.fail(f"regex construct {str(op).lower()}")

    def in_set(self, av: list) -> Pattern:
        negated = bool(av) and av[0][0] is sre_c.NEGATE
        ranges: Ranges = []
        for op, arg in av[1:] if negated else av:
            if op is sre_c.LITERAL:
                ranges.append((arg, arg))
            elif op is sre_c.RANGE:
                ranges.append(arg)
            elif op is sre_c.CATEGORY and len(av) == 1 and not negated:
                cat, cat_negated = _CATEGORIES[arg]
                return charset(cat, cat_negated)
            elif op is sre_c.CATEGORY and not _CATEGORIES[arg][1]:
                ranges.extend(_CATEGORIES[arg][0])
            else:
                raise self.fail("negated shorthand inside a class")
        return charset(ranges, negated)


def pattern_to_content(pattern: str, pointer: str) -> Pattern:
    """Regex for the JSON-encoded content (between the quotes) of strings matching ``pattern``."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, OverflowError) as exc:
        raise UnsupportedSchemaError("pattern", pointer, f"cannot parse {pattern!r}: {exc}") from exc
    t = _Translator(pointer)
    top = list(parsed)
    branches = [list(b) for b in top[0][1][1]] if len(top) == 1 and top[0][0] is sre_c.BRANCH else [top]
    out: list[Pattern] = []
    for items in branches:
        start = bool(items) and items[0] == (sre_c.AT, sre_c.AT_BEGINNING)
        end = bool(items) and items[-1][0] is sre_c.AT and items[-1][1] in (
            sre_c.AT_END, sre_c.AT_END_STRING)
        body = t.items(items[int(start): len(items) - int(end)])
        any_chars = f"{STRING_CHAR}*"
        out.append(seq("" if start else any_chars, body, "" if end else any_chars))
    return alt(out)
