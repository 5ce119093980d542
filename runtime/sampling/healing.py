"""Token healing (Guidance's, beyond SGLang): a prompt that ends in the middle of what the model
would write as one token (``"http:"`` where ``"://"`` is one token) forces an unnatural split.
With ``token_healing`` the prompt's last token is backed off and the first generated token must
extend its text (that token itself or any token whose bytes start with its bytes); the output's
text leaves the backed-off part out, so the prompt plus the output reads as before.

Everything before the backed-off token is an ordinary prompt, so the radix cache still reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Healing:
    input_ids: list[int]  # the prompt without its last token
    first_ids: list[int]  # the first output token must be one of these
    drop: str  # the backed-off token's text: left out of the output's text


def heal(input_ids: list[int], info: Any) -> Healing | None:
    """The healed prompt, or None where there is nothing to heal (one token, or a last token
    that is a special token or not whole UTF-8 text). ``info``: the TokenizerInfo."""
    if len(input_ids) < 2:
        return None
    last = input_ids[-1]
    raw = info.token_bytes[last] if last < len(info.token_bytes) else None
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    first = [last, *info.extensions(last).tolist()]
    return Healing(input_ids[:-1], first, text)
