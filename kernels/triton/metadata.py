"""Per-step attention metadata for the Triton kernels, on the kernels' device: built once per
forward from the scheduler's lists with one host-to-device copy, then read by every layer.

NOTE: a CUDA backend (runtime/layers, not written yet) builds one of these in `prepare` and
calls `extend_attention` / `decode_attention` with its fields in `forward`; nothing per request
runs in Python after `build`. For CUDA graphs, `DecodeMetadata.build(..., pad_to=B)` pads the
batch to a captured size: padded rows read table row `pad_row` with one key (slot 0 or any
finite slot) and their outputs are dropped, so a graph captured at size B replays for any
batch <= B after the buffers are overwritten in place (`copy_into`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import check


def _to_device(columns: list[list[int]], device: torch.device | str) -> torch.Tensor:
    """(len(columns), n) int64 on device, in one copy (pinned when the target is CUDA)."""
    host = torch.tensor(columns, dtype=torch.int64)
    if torch.device(device).type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


@dataclass(frozen=True)
class ExtendMetadata:
    """Requests b = 0..batch-1 with new tokens packed in q rows q_start[b] .. + extend_lens[b]."""

    req_rows: torch.Tensor  # (batch,) rows of the request-to-token table
    q_start: torch.Tensor  # (batch,) first packed query row of each request
    prefix_lens: torch.Tensor  # (batch,) tokens already in the KV pool
    extend_lens: torch.Tensor  # (batch,) new tokens
    max_extend: int  # sizes the kernel's grid

    @classmethod
    def build(cls, req_rows: list[int], prefix_lens: list[int], extend_lens: list[int],
              device: torch.device | str) -> ExtendMetadata:
        check(len(req_rows) == len(prefix_lens) == len(extend_lens) > 0,
              "req_rows, prefix_lens and extend_lens must have one entry per request")
        check(min(extend_lens) > 0 and min(prefix_lens) >= 0, "extend_lens must be > 0 and prefix_lens >= 0")
        starts, total = [], 0
        for n in extend_lens:
            starts.append(total)
            total += n
        t = _to_device([req_rows, starts, prefix_lens, extend_lens], device)
        return cls(t[0], t[1], t[2], t[3], max(extend_lens))


@dataclass(frozen=True)
class DecodeMetadata:
    """One query row per request, at position seq_lens[b] - 1; rows past `batch` are padding."""

    req_rows: torch.Tensor  # (padded,)
    seq_lens: torch.Tensor  # (padded,) keys per request, the new token's included; 1 for padding
    batch: int  # real requests: the first `batch` rows

    @classmethod
    def build(cls, req_rows: list[int], seq_lens: list[int], device: torch.device | str,
              pad_to: int | None = None, pad_row: int = 0) -> DecodeMetadata:
        batch = len(req_rows)
        check(batch == len(seq_lens) > 0, "req_rows and seq_lens must have one entry per request")
        check(min(seq_lens) > 0, "every seq_len must be >= 1 (the new token's key is in the pool)")
        size = pad_to if pad_to is not None else batch
        check(size >= batch, f"pad_to {pad_to} is smaller than the batch {batch}: capture a larger graph")
        pad = size - batch
        t = _to_device([req_rows + [pad_row] * pad, seq_lens + [1] * pad], device)
        return cls(t[0], t[1], batch)

    def copy_into(self, target: DecodeMetadata) -> None:
        """Overwrites a captured graph's buffers (same padded size) with this step's values."""
        check(target.req_rows.shape == self.req_rows.shape, "copy_into needs metadata padded to the same size")
        target.req_rows.copy_(self.req_rows)
        target.seq_lens.copy_(self.seq_lens)
