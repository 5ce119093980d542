"""Batched vocab masking for one decode step.

Cost: one cached-bias lookup per constrained row and one ``add_`` of a 0/-inf row (stacked for
a fully constrained batch). Per-state biases live on the logits' device and dtype after first use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .grammar import Grammar


def apply_grammar_masks(grammars: Sequence[Grammar | None], logits: torch.Tensor) -> None:
    """Set disallowed logits to -inf in place.

    ``logits``: (batch, vocab) with vocab == the compiler's ``vocab_size`` (padding ids past the
    tokenizer are always disallowed). ``grammars[i]`` None leaves row i unconstrained. EOS ids are
    allowed only where the grammar accepts; a terminated grammar allows EOS only.
    """
    if logits.dim() != 2 or logits.shape[0] != len(grammars):
        raise ValueError(f"logits {tuple(logits.shape)} must be (batch={len(grammars)}, vocab)")
    rows = [i for i, g in enumerate(grammars) if g is not None]
    if not rows:
        return
    biases = [_row_bias(grammars[i], logits) for i in rows]  # type: ignore[arg-type]
    if biases[0].shape[0] != logits.shape[1]:
        raise ValueError(f"logits width {logits.shape[1]} != grammar vocab_size {biases[0].shape[0]}; "
                         "build the GrammarCompiler with the model's vocab_size")
    if len(rows) == len(grammars) and len(rows) > 1:
        logits.add_(torch.stack(biases))  # (batch, vocab): one op for a fully constrained batch
    else:
        for i, b in zip(rows, biases):
            logits[i].add_(b)


def _row_bias(grammar: Grammar, logits: torch.Tensor) -> torch.Tensor:
    info = grammar.compiled.info
    if grammar.terminated:  # only EOS may follow; normally the request has already stopped
        bias = torch.full((info.vocab_size,), float("-inf"), dtype=logits.dtype)
        bias[sorted(info.eos_token_ids)] = 0.0
        return bias.to(logits.device)
    return grammar.compiled.bias(grammar.state, logits.device, logits.dtype)
