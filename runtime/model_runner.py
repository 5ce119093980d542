"""ModelRunner: turns a scheduled batch into a ForwardBatch, runs the model, applies its head.

Models return hidden states; the head is what the model declares (`task`): logits of the rows
the sampler needs (generation), or a pooled vector per finished request (`pooler`: embedding
models; with `classifier`: scores of classification and reward models, through the model's
`activation`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .cache import KVPool, ReqToTokenTable
from .forward_batch import ScheduledBatch, pack
from .layers.attention_backend import select_backend
from .layers.classifier import apply_activation
from .layers.fused_decoder import forward_fused, fused_decoder_for
from .multimodal.cross_kv import attach_cross_kv
from .multimodal.embed import embed_media
from .multimodal.encoder_cache import EncoderCache

TASKS = ("generate", "embed", "classify")


class ForwardOutput(NamedTuple):
    logits: torch.Tensor  # (len(logit_rows), vocab) float32; (0, 0) for pooling models
    # (len(pool_reqs), dim) float32, or None: embeddings (not normalized) or classifier scores
    pooled: torch.Tensor | None


class ModelRunner:
    def __init__(self, model: nn.Module, kv_pool: KVPool, table: ReqToTokenTable, device: torch.device,
                 encoder_cache_bytes: int = 0, attention_backend: str = "auto") -> None:
        self.model, self.kv_pool, self.table, self.device = model, kv_pool, table, device
        self.encoder_cache = EncoderCache(encoder_cache_bytes)  # media embeddings by content hash
        # cross-attention keys and values by image hash (Mllama), within the same budget again
        self.cross_kv_cache = EncoderCache(encoder_cache_bytes)
        self.attn_backend = select_backend(device, attention_backend)
        self.task = getattr(type(model), "task", "generate")
        assert self.task in TASKS, f"{type(model).__name__}.task={self.task!r}: use one of {TASKS}"
        # a pooler over every token (cls, mean) needs whole prompts in one forward; so does a
        # bidirectional encoder (`bidirectional`: BERT) whatever it pools, and its KV is not a
        # reusable prefix (each token's keys depend on the tokens after it)
        bidirectional = bool(getattr(type(model), "bidirectional", False))
        self.pools_all_tokens = self.task != "generate" and (model.pooler.needs_all_tokens or bidirectional)
        self.fused = fused_decoder_for(model)  # the executor for a plain Llama's layers, or None

    @torch.inference_mode()
    def forward(self, sched: ScheduledBatch) -> ForwardOutput:
        sched = embed_media(sched, self.model, self.encoder_cache)  # images/video of the chunk
        sched = attach_cross_kv(sched, self.model, self.cross_kv_cache)  # images a request cross-attends
        batch = pack(sched, self.kv_pool, self.table.table, self.attn_backend, self.device)
        # (tokens, hidden), after the final norm
        hidden = self.model(batch) if self.fused is None else forward_fused(self.fused, self.model, batch)
        if self.task == "generate":
            return ForwardOutput(self.model.compute_logits(hidden, batch).float(), None)
        pooled = None
        if sched.pool_reqs:
            pooled = self.model.pooler(hidden, batch, sched.pool_reqs)
            if self.task == "embed" and hasattr(self.model, "project"):  # CLIP: into the joint space
                pooled = self.model.project(pooled.to(hidden.dtype)).float()
            if self.task == "classify":
                logits = self.model.classifier(pooled.to(hidden.dtype)).float()
                pooled = apply_activation(logits, self.model.activation)
        return ForwardOutput(hidden.new_zeros((0, 0), dtype=torch.float32), pooled)

    def idle(self) -> None:
        """Called by the scheduler thread while it has no work (a tensor-parallel runner checks its ranks)."""

    def close(self) -> None:
        """Called once when the scheduler thread ends (a tensor-parallel runner stops its ranks)."""
