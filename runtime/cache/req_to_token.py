"""Request-to-token table: row r, column i holds the KV slot of request r's i-th token."""

from __future__ import annotations

import torch


class ReqToTokenTable:
    def __init__(self, max_requests: int, max_context: int, device: torch.device | str = "cpu") -> None:
        self.table = torch.zeros(max_requests, max_context, dtype=torch.int64, device=device)
        self.max_context = max_context
        self._free_rows = list(range(max_requests - 1, -1, -1))

    def available(self) -> int:
        return len(self._free_rows)

    def alloc(self) -> int | None:
        return self._free_rows.pop() if self._free_rows else None

    def free(self, row: int) -> None:
        self._free_rows.append(row)

    def write(self, row: int, start: int, slots: torch.Tensor) -> None:
        self.table[row, start : start + len(slots)] = slots

    def read(self, row: int, length: int) -> torch.Tensor:
        return self.table[row, :length]
