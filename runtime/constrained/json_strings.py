"""Regexes for JSON strings: free text, length bounds, ``format`` and ``pattern``.

A string keyword set is enforced as ONE of: lengths, a format, or a pattern. Two of them
together would need a regex intersection, so that combination is rejected, naming the keyword.
"""

from __future__ import annotations

from typing import Any

from .ecma_pattern import pattern_to_content
from .errors import UnsupportedSchemaError, count_keyword
from .regex_text import STRING_CHAR, Pattern, repeat, seq

_YEAR = "[0-9]{4}"
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])"
    "|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    "|02-(0[1-9]|1[0-9]|2[0-8]))"
)
DATE = f"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"  # exact, leap years included
# NOTE: leap second ":60" is not generated (its validity depends on the offset). Fractional
# seconds are bounded to nanoseconds (RFC 3339 allows more), as whitespace is: a sampling model
# can otherwise append digits until the token budget runs out, and a cut-off output cannot parse.
TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?([zZ]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_HEX = "[0-9a-fA-F]"
_ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_URI_CHAR = "([A-Za-z0-9._~:/?#@!$&'()*+,;=\\[\\]-]|%[0-9a-fA-F]{2})"

FORMATS: dict[str, str] = {
    "date": DATE,
    "time": TIME,
    "date-time": f"{DATE}[Tt]{TIME}",
    "uuid": f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}",
    "email": f"{_ATOM}(\\.{_ATOM})*@{_LABEL}(\\.{_LABEL})*",
    "uri": f"[A-Za-z][A-Za-z0-9+.-]*:{_URI_CHAR}*",
    "ipv4": f"({_OCTET}\\.){{3}}{_OCTET}",
}
_STRING_KEYWORDS = ("minLength", "maxLength", "pattern", "format")


def string_regex(schema: dict[str, Any], pointer: str) -> Pattern:
    """Regex for a JSON string (quotes included) obeying the string keywords of ``schema``."""
    present = [k for k in _STRING_KEYWORDS if k in schema]
    shapes = {"pattern", "format"} & set(present)
    if len(shapes) > 1 or (shapes and len(present) > 1):
        other = next(k for k in present if k not in shapes) if len(shapes) == 1 else "format"
        first = sorted(shapes)[0]
        raise UnsupportedSchemaError(other, pointer, f"together with {first!r}")
    if "format" in schema:
        fmt = schema["format"]
        if fmt not in FORMATS:
            supported = ", ".join(sorted(FORMATS))
            raise UnsupportedSchemaError("format", pointer, f"format {fmt!r}; supported: {supported}")
        return seq('"', FORMATS[fmt], '"')
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise UnsupportedSchemaError("pattern", pointer, "must be a string")
        return seq('"', pattern_to_content(schema["pattern"], pointer + "/pattern"), '"')
    lo = count_keyword(schema, "minLength", pointer) or 0
    hi = count_keyword(schema, "maxLength", pointer)
    return seq('"', repeat(STRING_CHAR, lo, hi), '"')
