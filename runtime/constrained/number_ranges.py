"""Regexes for JSON numbers inside bounds.

Integers: exact, as digit-range regexes over canonical forms (no leading zeros, no "-0").
Numbers (floats): exact for plain decimal notation ``-?int(.frac)?``; when a bound is present the
exponent form (``1e3``) is not generated (an instance written with an exponent is rejected, never
a value outside the bounds accepted). Fractions are compared digit by digit as decimal strings,
so bounds like 1.1 or 0.3 are exact (no float rounding).
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from .regex_text import Pattern, alt, char_class, escape, seq

# NOTE: digit runs are bounded so sampling cannot loop on digits forever (a model happily
# writes 0.26199826569234458326813...): at most 19 integer digits (int64), 16 fraction digits
# past any digits a bound pins, 3 exponent digits. Longer numbers are never generated.
MAX_INT_DIGITS, MAX_FRACTION_DIGITS = 19, 16
_FREE = f"[0-9]{{0,{MAX_FRACTION_DIGITS}}}"
INTEGER = f"-?(0|[1-9][0-9]{{0,{MAX_INT_DIGITS - 1}}})"
NUMBER = INTEGER + f"(\\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?([eE][+-]?[0-9]{{1,3}})?"
_ANY_FRACTION = f"(\\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?"


class Bound(NamedTuple):
    value: Decimal
    inclusive: bool


def _digits(lo: int, hi: int) -> str:
    return "[0-9]" if (lo, hi) == (0, 9) else char_class(str(d) for d in range(lo, hi + 1))


def _same_length(a: str, b: str) -> str:
    """Digit strings of len(a) == len(b) between a and b inclusive (a <= b)."""
    if not a:
        return ""
    if a[0] == b[0]:
        return a[0] + _same_length(a[1:], b[1:])
    n = len(a) - 1
    if a[1:] == "0" * n and b[1:] == "9" * n:
        return _digits(int(a[0]), int(b[0])) + (f"[0-9]{{{n}}}" if n > 1 else "[0-9]" * n)
    parts = [a[0] + _same_length(a[1:], "9" * n)]
    if int(a[0]) + 1 <= int(b[0]) - 1:
        tail = f"[0-9]{{{n}}}" if n > 1 else "[0-9]" * n
        parts.append(_digits(int(a[0]) + 1, int(b[0]) - 1) + tail)
    parts.append(b[0] + _same_length("0" * n, b[1:]))
    return alt(parts) or ""


def natural_range(lo: int, hi: int | None) -> Pattern:
    """Canonical non-negative integers in [lo, hi] (hi None: unbounded)."""
    lo = max(lo, 0)
    if hi is not None and hi < lo:
        return None
    parts: list[Pattern] = []
    length = len(str(lo))
    while hi is None or length <= len(str(hi)):
        first = lo if length == len(str(lo)) else 10 ** (length - 1)
        last = 10**length - 1 if hi is None or length < len(str(hi)) else hi
        parts.append(_same_length(str(first), str(last)))
        if hi is None:
            if length < MAX_INT_DIGITS:  # every longer number, up to the digit cap
                parts.append(f"[1-9][0-9]{{{length},{MAX_INT_DIGITS - 1}}}")
            break
        length += 1
    return alt(parts)


def integer_range(lo: int | None, hi: int | None) -> Pattern:
    """Canonical integers (``-5``, ``0``, ``12``) in [lo, hi]; None means unbounded."""
    if lo is None and hi is None:
        return INTEGER
    parts: list[Pattern] = []
    if hi is None or hi >= 0:
        parts.append(natural_range(max(lo, 0) if lo is not None else 0, hi))
    if lo is None or lo < 0:  # magnitudes of negatives, never "-0"
        mag_lo = max(1, -hi) if hi is not None else 1
        parts.append(seq("-", natural_range(mag_lo, -lo if lo is not None else None)))
    return alt(parts)


def integer_bounds(lower: Bound | None, upper: Bound | None) -> tuple[int | None, int | None]:
    """Tightest integer bounds [lo, hi] implied by decimal bounds."""
    lo = hi = None
    if lower is not None:
        lo = math.ceil(lower.value)
        if not lower.inclusive and lo == lower.value:
            lo += 1
    if upper is not None:
        hi = math.floor(upper.value)
        if not upper.inclusive and hi == upper.value:
            hi -= 1
    return lo, hi


def _split(d: Decimal) -> tuple[int, str]:
    """Non-negative decimal -> (integer part, fraction digits without trailing zeros)."""
    text = format(d, "f")
    whole, _, frac = text.partition(".")
    return int(whole), frac.rstrip("0")


@lru_cache(maxsize=4096)
def _fraction(lo: str | None, lo_inc: bool, hi: str | None, hi_inc: bool, nonempty: bool) -> Pattern:
    """Digit strings g with lo <=/< 0.g <=/< hi, comparing as decimal fractions.

    ``lo``/``hi`` are digit strings without trailing zeros ("" is zero); None is unbounded.
    """
    if lo is None and hi is None:
        return f"[0-9]{{{int(nonempty)},{MAX_FRACTION_DIGITS}}}"
    # The two self-loops (a lone 0 keeps the same constraint) are closed forms:
    if hi == "":  # 0.g <= 0: only zeros, and only if lo allows zero
        zeros = f"0{{{int(nonempty)},{MAX_FRACTION_DIGITS}}}"
        return zeros if hi_inc and (lo is None or (lo == "" and lo_inc)) else None
    if lo == "" and not lo_inc and hi is None:  # 0.g > 0: some nonzero digit
        return f"0{{0,{MAX_FRACTION_DIGITS}}}[1-9]{_FREE}"
    parts: list[Pattern] = []
    # g ends here: its remaining value is 0.
    lo_ok = lo is None or (lo == "" and lo_inc)
    hi_ok = hi is None or hi != "" or hi_inc
    if not nonempty and lo_ok and hi_ok:
        parts.append("")
    # g continues with digit d; group digits that lead to the same remaining constraint.
    by_next: dict[tuple, list[str]] = {}
    for d in "0123456789":
        if lo is None:
            nlo: tuple = (None, lo_inc)
        else:
            l0 = lo[0] if lo else "0"
            if d < l0:
                continue
            satisfied = d > l0 or (lo == "" and lo_inc)
            nlo = (None, lo_inc) if satisfied else (lo[1:], lo_inc)
        if hi is None:
            nhi: tuple = (None, hi_inc)
        else:
            h0 = hi[0] if hi else "0"
            if d > h0:
                continue
            nhi = (None, hi_inc) if d < h0 else (hi[1:], hi_inc)
        by_next.setdefault((nlo, nhi), []).append(d)
    for ((nlo, nlo_inc), (nhi, nhi_inc)), ds in by_next.items():
        rest = _fraction(nlo, nlo_inc, nhi, nhi_inc, False)
        digit = "[0-9]" if len(ds) == 10 else char_class(ds) if len(ds) > 1 else ds[0]
        parts.append(seq(digit, rest))
    return alt(parts)


def _fraction_part(lo: Bound | None, hi: Bound | None) -> Pattern:
    """The optional ``.digits`` after an integer part, with the fraction bounded."""
    lo_f = (_split(lo.value)[1], lo.inclusive) if lo is not None else (None, True)
    hi_f = (_split(hi.value)[1], hi.inclusive) if hi is not None else (None, True)
    no_dot = (lo_f[0] in (None, "") and lo_f[1]) or lo_f[0] is None
    no_dot = no_dot and (hi_f[0] is None or hi_f[0] != "" or hi_f[1])
    dotted = seq("\\.", _fraction(lo_f[0], lo_f[1], hi_f[0], hi_f[1], True))
    return alt(["" if no_dot else None, dotted])


def _magnitude(lo: Bound, hi: Bound | None) -> Pattern:
    """Non-negative decimals (no sign, no exponent) with lo <=/< x <=/< hi."""
    a = _split(lo.value)[0]
    if hi is None:
        return alt([seq(escape(str(a)), _fraction_part(lo, None)),
                    seq(natural_range(a + 1, None), _ANY_FRACTION)])
    if hi.value < lo.value or (hi.value == lo.value and not (lo.inclusive and hi.inclusive)):
        return None
    b = _split(hi.value)[0]
    if a == b:
        return seq(escape(str(a)), _fraction_part(lo, hi))
    return alt([
        seq(escape(str(a)), _fraction_part(lo, None)),
        seq(natural_range(a + 1, b - 1), _ANY_FRACTION) if a + 1 <= b - 1 else None,
        seq(escape(str(b)), _fraction_part(None, hi)),
    ])


def number_range(lower: Bound | None, upper: Bound | None) -> Pattern:
    """JSON numbers in the bounds (plain decimal notation when any bound is set)."""
    if lower is None and upper is None:
        return NUMBER
    zero = Decimal(0)
    parts: list[Pattern] = []
    if upper is None or upper.value > zero or (upper.value == zero and upper.inclusive):
        lo = lower if lower is not None and lower.value >= zero else Bound(zero, True)
        parts.append(_magnitude(lo, upper))
    if lower is None or lower.value < zero:  # "-" then a magnitude m > 0, with -m in bounds
        if upper is not None and upper.value < zero:
            m_lo = Bound(-upper.value, upper.inclusive)
        else:
            m_lo = Bound(zero, False)
        m_hi = Bound(-lower.value, lower.inclusive) if lower is not None else None
        parts.append(seq("-", _magnitude(m_lo, m_hi)))
    return alt(parts)
