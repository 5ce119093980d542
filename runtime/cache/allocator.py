"""Slot allocator: hands out KV slot indices from a free list."""

from __future__ import annotations

import torch


class SlotAllocator:
    """Free slots are 1..num_slots (slot 0 is the padding slot). `alloc` returns None when there
    is not enough room; the caller evicts from the radix cache or retracts, then retries."""

    def __init__(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self._free = torch.arange(1, num_slots + 1, dtype=torch.int64)
        self._pending: list[torch.Tensor] = []  # freed slots not merged back yet

    def available(self) -> int:
        return len(self._free) + sum(len(p) for p in self._pending)

    def alloc(self, n: int) -> torch.Tensor | None:
        if n > len(self._free) and self._pending:
            self._merge()
        if n > len(self._free):
            return None
        out, self._free = self._free[:n], self._free[n:]
        return out

    def free(self, slots: torch.Tensor) -> None:
        if slots.numel():
            self._pending.append(slots.to(torch.int64))

    def _merge(self) -> None:
        self._free = torch.cat([self._free, *self._pending])
        self._pending.clear()

    def free_slots(self) -> torch.Tensor:
        """All free slots (for integrity checks)."""
        self._merge()
        return self._free.clone()

    def reset(self) -> None:
        self._free = torch.arange(1, self.num_slots + 1, dtype=torch.int64)
        self._pending.clear()
