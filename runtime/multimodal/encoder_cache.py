"""EncoderCache: encoder outputs (media embeddings) by content hash, least recently used
first out, within a byte budget. Lives on the scheduler thread (the runner owns it). The
runner keeps a second one for cross-attention keys and values (multimodal/cross_kv.py)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

from .items import MediaItem


class EncoderCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.entries: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.runs = 0  # items the encoder computed (a hit costs none)

    def get(self, items: list[MediaItem], encode: Callable[[list[MediaItem]], list[torch.Tensor]],
            rows_are_tokens: bool = True) -> list[torch.Tensor]:
        """(item.length, hidden) embeddings of each item: cached ones as they are, the rest
        computed in one `encode` call and kept while the budget allows. rows_are_tokens=False:
        the tensors are not one row a token (cross-attention keys and values)."""
        missing = list({it.hash: it for it in items if it.hash not in self.entries}.values())
        fresh = dict(zip([it.hash for it in missing], encode(missing))) if missing else {}
        self.runs += len(missing)
        out = []
        for it in items:
            rows = fresh.get(it.hash)
            if rows is None:
                rows = self.entries[it.hash]
                self.entries.move_to_end(it.hash)
            if rows_are_tokens and rows.shape[0] != it.length:
                raise RuntimeError(f"the encoder gave {rows.shape[0]} rows for a {it.modality} of {it.length} tokens")
            out.append(rows)
        for h, rows in fresh.items():
            self._put(h, rows)
        return out

    def _put(self, h: int, rows: torch.Tensor) -> None:
        size = rows.numel() * rows.element_size()
        if size > self.budget:
            return  # larger than the whole budget: used for this step only
        while self.bytes + size > self.budget:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
        self.entries[h] = rows
        self.bytes += size

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0
