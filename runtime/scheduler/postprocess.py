"""After a forward: logprob bookkeeping, appending sampled tokens, and finish checks."""

from __future__ import annotations

import torch

from ..sampling.logprobs import token_logprobs, top_logprobs
from .request import Req


def record_input_logprobs(req: Req, logits: torch.Tensor, first_pos: int) -> None:
    """`logits` (rows, vocab) are the logits at prompt positions first_pos.. (each predicts the
    next prompt token). Appends rows for tokens first_pos+1.. ; the row of token `start` is None."""
    lp = req.logprob
    assert lp is not None
    ids = req.input_ids
    if first_pos == lp.start and not lp.input_values:
        lp.input_values.append(None)
        lp.input_top.append(None)
    if logits.shape[0] == 0:
        return
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(ids[first_pos + 1 : first_pos + 1 + logits.shape[0]])
    lp.input_values.extend(token_logprobs(logprobs, targets))
    if lp.top_k:
        lp.input_top.extend(top_logprobs(logprobs, lp.top_k))
    else:
        lp.input_top.extend([None] * logits.shape[0])


def record_output_logprob(req: Req, logprobs_row: torch.Tensor, token: int) -> None:
    lp = req.logprob
    assert lp is not None
    lp.output_values.append(float(logprobs_row[token]))
    if lp.top_k:
        lp.output_top.extend(top_logprobs(logprobs_row[None], lp.top_k))


def append_token(req: Req, token: int, context_length: int) -> None:
    """Appends a sampled token and sets `finish_reason` if the request is done."""
    req.output_ids.append(token)
    p = req.sampling
    if token in p.stop_token_ids or (not p.ignore_eos and token in req.eos_ids):
        _finish(req, {"type": "stop", "matched": token})
        return
    if req.grammar is not None:
        req.grammar.advance(token)
    delta = req.detokenizer.add(token)
    if req.stop_checker and delta:
        m = req.stop_checker.find(req.detokenizer.text, len(delta))
        if m is not None:
            end = m.start + (len(m.matched) if p.no_stop_trim else 0)
            _finish(req, {"type": "stop", "matched": m.matched}, text=req.detokenizer.text[:end])
            return
    check_finished(req, context_length)


def check_finished(req: Req, context_length: int) -> None:
    """Grammar and length checks, after one sampled token or a jump-forward run of tokens."""
    p = req.sampling
    if req.grammar is not None and req.grammar.is_finished():
        _finish(req, {"type": "stop", "matched": None})
    elif len(req.output_ids) >= p.max_new_tokens:
        _finish(req, {"type": "length", "length": p.max_new_tokens})
    elif len(req.input_ids) + len(req.output_ids) >= context_length:
        _finish(req, {"type": "length", "length": len(req.output_ids)})


def _finish(req: Req, reason: dict, text: str | None = None) -> None:
    if text is None:
        req.detokenizer.flush()
        text = req.detokenizer.text
    req.text = text
    req.finish_reason = reason


def finish_abort(req: Req, message: str) -> None:
    if not req.finished:
        _finish(req, {"type": "abort", "message": message})


def finish_error(req: Req, message: str) -> None:
    """Ends a request that a failed engine step touched, whatever state it was in (an abort
    with status 500: the server answers it as an internal error, naming `message`)."""
    try:
        req.detokenizer.flush()
        req.text = req.detokenizer.text
    except Exception:  # the detokenizer may be what failed
        req.text = ""
    req.finish_reason = {"type": "abort", "message": message, "status_code": 500}


def finish_prefill_only(req: Req) -> None:
    """A max_new_tokens=0 request is done once its prompt is in the cache."""
    req.text = ""
    req.finish_reason = {"type": "length", "length": 0}
