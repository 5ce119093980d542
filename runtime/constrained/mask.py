"""Batched vocab masking for one decode step.

A row's decoding mask is one of: a grammar state's precomputed packed row (state_table.py), a
single forced token, or EOS only (``Grammar.mask_key``). Each is expanded once into an additive
0 / -inf bias row and kept in a ``BiasPool``; a step is one pool lookup and one ``add_`` per
constrained row.

Expanding packed bits: ``LUT[byte]`` holds the 8 bias values of one byte's bits, so one gather
over ``words * 4`` bytes expands a whole row.

NOTE: on one CPU core at 49k vocab: the ``add_`` ~10 µs; the gather ~10-20 µs (``np.take``;
numpy fancy indexing and torch indexing measured 5-15x slower); ``masked_fill_`` with a bool mask
~20x slower than the add (not vectorized for scattered masks); and first writes to freshly
allocated memory ~100 µs per 196 KB row (page faults), which is why rows live in one buffer
allocated once and are overwritten, never allocated per state.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from .grammar import Grammar

POOL_ROWS = 128  # bias rows per scheduler thread, device and dtype: 25 MB of float32 at 49k vocab


def _byte_lut() -> np.ndarray:
    """(256, 8) float32: entry [b, k] is 0 if bit k of byte b is set, else -inf."""
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    return np.where(bits == 1, 0.0, -np.inf).astype(np.float32)


_LUT = _byte_lut()
_local = threading.local()  # pools of this thread: {(vocab, device, dtype): BiasPool}


class BiasPool:
    """The bias rows of the most recently used (grammar, mask) pairs: one preallocated
    (capacity, vocab) tensor, LRU slots. One per thread (the scheduler's), device and dtype.

    NOTE: keys hold the compiled grammar weakly, so a pooled row never keeps a grammar alive and
    a new grammar never matches a dead one's rows.
    """

    def __init__(self, vocab: int, device: torch.device, dtype: torch.dtype, capacity: int = POOL_ROWS) -> None:
        self.vocab = vocab
        self.rows = torch.zeros(capacity, vocab, device=device, dtype=dtype)  # touched once, now
        self._slot: OrderedDict[tuple, int] = OrderedDict()
        self._staging = np.empty(((vocab + 31) // 32 * 4, 8), dtype=np.float32)  # (words * 4, 8)

    def row(self, grammar: Grammar) -> torch.Tensor:
        """(vocab,) 0 / -inf bias of the grammar's decoding mask; valid until POOL_ROWS other
        rows were asked for (use it before the next call)."""
        key = (weakref.ref(grammar.compiled), *grammar.mask_key())
        slot = self._slot.get(key)
        if slot is not None:
            self._slot.move_to_end(key)
            return self.rows[slot]
        slot = len(self._slot) if len(self._slot) < self.rows.shape[0] else self._slot.popitem(last=False)[1]
        self._slot[key] = slot
        row = self.rows[slot]
        direct = row.device.type == "cpu" and row.dtype == torch.float32 and self.vocab % 32 == 0
        out = row.numpy().reshape(-1, 8) if direct else self._staging  # gather in place if it fits
        np.take(_LUT, grammar.packed_mask().view(np.uint8), axis=0, out=out, mode="clip")
        if not direct:
            row.copy_(torch.from_numpy(self._staging.reshape(-1)[: self.vocab]))
        return row


def bias_pool(vocab: int, device: torch.device, dtype: torch.dtype) -> BiasPool:
    pools = _local.__dict__.setdefault("pools", {})
    pool = pools.get((vocab, device, dtype))
    if pool is None:
        pool = pools[(vocab, device, dtype)] = BiasPool(vocab, device, dtype)
    return pool


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
    vocab = grammars[rows[0]].compiled.info.vocab_size  # type: ignore[union-attr]
    if vocab != logits.shape[1]:
        raise ValueError(f"logits width {logits.shape[1]} != grammar vocab_size {vocab}; "
                         "build the GrammarCompiler with the model's vocab_size")
    pool = bias_pool(vocab, logits.device, logits.dtype)
    if logits.device.type == "cpu" or len(rows) == 1:
        for i in rows:  # NOTE: a stacked (batch, vocab) bias would be fresh memory: page faults
            logits[i].add_(pool.row(grammars[i]))  # type: ignore[arg-type]
    else:  # accelerator: two kernels, however many rows
        biases = torch.stack([pool.row(grammars[i]) for i in rows])  # type: ignore[arg-type]
        logits.index_add_(0, torch.tensor(rows, device=logits.device), biases)
