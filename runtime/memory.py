"""Sizing the KV pool."""

from __future__ import annotations

import torch

from .cache.kv_pool import KVPool
from .config import EngineConfig

# On CPU the pool is host memory that the rest of the machine also needs; cap the default.
CPU_DEFAULT_MAX_SLOTS = 131072


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def choose_num_slots(cfg: EngineConfig, pool: KVPool, device: torch.device, context_length: int) -> int:
    """`max_total_tokens` if given, else `mem_fraction_static` of free memory, in tokens of
    `pool` (whose layout says what a token costs)."""
    if cfg.max_total_tokens is not None:
        return cfg.max_total_tokens
    per_token = pool.bytes_per_token()
    slots = int(_available_bytes(device) * cfg.mem_fraction_static) // per_token
    if device.type == "cpu":
        slots = min(slots, CPU_DEFAULT_MAX_SLOTS)
    if slots < context_length // 4:
        raise MemoryError(f"only {slots} KV slots fit in memory; lower context_length or raise mem_fraction_static")
    return slots
