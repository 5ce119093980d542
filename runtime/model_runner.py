"""ModelRunner: turns a scheduled batch into a ForwardBatch and runs the model."""

from __future__ import annotations

import torch
from torch import nn

from .cache import KVPool, ReqToTokenTable
from .forward_batch import ForwardBatch, ForwardMode
from .layers.torch_attention import TorchNativeBackend


class ModelRunner:
    def __init__(self, model: nn.Module, kv_pool: KVPool, table: ReqToTokenTable, device: torch.device) -> None:
        self.model, self.kv_pool, self.table, self.device = model, kv_pool, table, device
        self.attn_backend = TorchNativeBackend()

    @torch.inference_mode()
    def forward(self, mode: ForwardMode, input_ids: list[int], positions: list[int], rows: list[int],
                prefix_lens: list[int], extend_lens: list[int], out_slots: torch.Tensor,
                logit_rows: list[int], extra: dict | None = None, rowwise: bool = False) -> torch.Tensor:
        """Runs one forward; returns (len(logit_rows), vocab) float32 logits."""
        dev = self.device
        batch = ForwardBatch(
            mode=mode,
            input_ids=torch.tensor(input_ids, dtype=torch.int64, device=dev),
            positions=torch.tensor(positions, dtype=torch.int64, device=dev),
            req_rows=torch.tensor(rows, dtype=torch.int64, device=dev),
            prefix_lens=prefix_lens,
            extend_lens=extend_lens,
            out_slots=out_slots.to(dev),
            kv_pool=self.kv_pool,
            req_to_token=self.table.table,
            logit_rows=torch.tensor(logit_rows, dtype=torch.int64, device=dev),
            attn_backend=self.attn_backend,
            extra=extra or {},
            rowwise=rowwise,
        )
        self.attn_backend.prepare(batch)
        return self.model(batch).float()
