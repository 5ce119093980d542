"""Jump-forward: when the grammar forces text (such as `{"name":"`), append its tokens without
sampling.

The tokens are the grammar's ``forced_tokens()``: the ones its decoding mask would force one by
one anyway (the tokenizer's own split of the forced text), so jumping changes the number of
forward steps, not the output. They are appended exactly as sampled tokens are (grammar, stop and
length checks included); the request then has several tokens without KV and goes through one
extend step.
"""

from __future__ import annotations

from .postprocess import append_token
from .request import Req


def try_jump_forward(req: Req, context_length: int) -> bool:
    """Returns True when tokens were appended (the request then needs an extend step, or is
    finished). Not used with logprobs: jumped tokens have no sampled logprob. Tokens are only
    ever appended, never replaced, so no KV slot is given back."""
    if req.grammar is None or req.finished or req.logprob is not None:
        return False
    n = 0
    for t in req.grammar.forced_tokens():
        append_token(req, t, context_length)
        n += 1
        if req.finished:
            break
    if n:
        req.jump_forward_tokens += n
    return n > 0
