"""Jump-forward: when the grammar admits exactly one continuation (a run of forced characters
such as `{"name": "`), append it without sampling.

The forced text is retokenized together with the last few output tokens, so the token sequence
is the one the tokenizer would produce for the combined text; dropped tokens give back their KV
slots. The request then has several tokens without KV and goes through one extend step.
"""

from __future__ import annotations

from .kv_manager import KVManager
from .postprocess import check_finished
from .request import Req


def try_jump_forward(req: Req, kv: KVManager, context_length: int) -> bool:
    """Returns True when text was appended (the request then needs an extend step, or is
    finished). Not used with logprobs: jumped tokens have no sampled logprob."""
    if req.grammar is None or req.finished or req.logprob is not None:
        return False
    jump = req.grammar.jump_forward()
    if jump is None:
        return False
    keep = len(req.output_ids) - jump.n_rollback
    new_kv_len = min(req.kv_len, len(req.input_ids) + keep)
    if new_kv_len < req.tree_len:  # would drop cached tokens (a resumed request): undo
        req.grammar.rollback(len(jump.token_ids))
        for t in req.output_ids[keep:]:
            req.grammar.advance(t)
        return False
    kv.truncate(req, new_kv_len)
    del req.output_ids[keep:]
    req.output_ids.extend(jump.token_ids)
    req.detokenizer.reset(req.output_ids)
    req.extra["jump_forward_tokens"] = req.extra.get("jump_forward_tokens", 0) + len(jump.token_ids)
    check_finished(req, context_length)
    return True
