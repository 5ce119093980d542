"""Tensor-parallel ranks. Rank 0 is the engine's process (scheduler, radix cache, tokenizer): its
`TPRunner` sends each scheduled batch to the other ranks, then runs its own share of the same
forward. Ranks 1.. run `worker_main`: load their shards, then forward every batch they receive
until told to stop; their collectives meet rank 0's inside the sharded layers.

The request-to-token table lives on rank 0 (KVManager writes it); a worker keeps a copy. With
each batch rank 0 sends the rows' prefixes the workers' copies lack (a new request's cached
prefix, or a row the radix cache rewrote: KVManager.cache), found by comparing with a shadow of
what it has sent; each worker writes the new tokens' slots itself.

NOTE (a dead rank ends everything, quickly): a worker exits on any error and when its parent
dies; rank 0 pings the workers every PING_S while idle, so a rank lost with nothing running is
found too; any failure of a collective is a `RankFailure`, fatal to the engine."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..cache import KVPool, ReqToTokenTable
from ..config import EngineConfig
from ..forward_batch import ScheduledBatch
from ..model_runner import ForwardOutput, ModelRunner
from .comm import RankFailure, TPGroup, TPSpec, free_port

logger = logging.getLogger("sgl.runtime")
PING_S = 1.0  # while idle, rank 0 checks the other ranks this often
_STOP, _PING = "stop", "ping"


@dataclass
class TableUpdate:
    row: int
    prefix: torch.Tensor  # (start,) the row's slots before the first token computed now


@dataclass
class Step:
    """One message to the workers: a batch and the table prefixes they lack."""

    batch: ScheduledBatch
    updates: list[TableUpdate] = field(default_factory=list)


def _apply(step: Step, table: torch.Tensor) -> None:
    """Writes a step's table rows on a worker: the prefixes sent, then the new tokens' slots."""
    for u in step.updates:
        table[u.row, : len(u.prefix)] = u.prefix
    for r in step.batch.reqs:
        table[r.row, r.start : r.start + len(r.input_ids)] = r.out_slots


class TPRunner(ModelRunner):
    """Rank 0's runner: every forward is sent to the other ranks first (see the module doc)."""

    def __init__(self, ranks: TPRanks, model: Any, kv_pool: KVPool, table: ReqToTokenTable,
                 device: torch.device) -> None:
        super().__init__(model, kv_pool, table, device)
        self.ranks = ranks
        self.shadow = torch.zeros_like(table.table)  # what the workers' tables hold
        self.last_sent = time.monotonic()

    def forward(self, sched: ScheduledBatch) -> ForwardOutput:
        step = Step(sched)
        table = self.table.table
        for r in sched.reqs:
            have, want = self.shadow[r.row, : r.start], table[r.row, : r.start]
            if not torch.equal(have, want):
                step.updates.append(TableUpdate(r.row, want.clone()))
        _apply(step, self.shadow)
        try:
            self._send(step)
            return super().forward(sched)
        except RankFailure:
            raise
        except Exception as e:  # the ranks are out of step now: nothing can compute any more
            raise RankFailure(f"tensor parallelism: rank 0's forward failed ({type(e).__name__}: {e}); "
                              "the ranks are out of step") from e

    def idle(self) -> None:
        if time.monotonic() - self.last_sent >= PING_S:
            self._send(_PING)

    def _send(self, msg: Any) -> None:
        self.ranks.group.broadcast_object(msg)
        self.last_sent = time.monotonic()

    def close(self) -> None:
        self.ranks.close()


def _threads_per_rank(ranks_here: int) -> int:
    return max(1, (os.cpu_count() or 1) // ranks_here)


def _rank_device(cfg: EngineConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _spec(cfg: EngineConfig, rank: int) -> TPSpec:
    return TPSpec(cfg.tp_size, rank, cfg.dist_init_addr or "", "cuda" if cfg.device == "cuda" else "cpu")


class TPRanks:
    """This node's ranks as seen from its first one: the group and the processes it started."""

    def __init__(self, cfg: EngineConfig, first_rank: int) -> None:
        per_node = cfg.tp_size // cfg.nnodes
        ctx = mp.get_context("spawn")
        self.procs = [ctx.Process(target=worker_main, args=(cfg, rank, os.getpid()), daemon=True,
                                  name=f"sgl-tp-rank{rank}")
                      for rank in range(first_rank + 1, first_rank + per_node)]
        for p in self.procs:
            p.start()
        self.threads = torch.get_num_threads()
        if cfg.device != "cuda":
            torch.set_num_threads(_threads_per_rank(per_node))  # the node's cores, shared by its ranks
        self.group = TPGroup(_spec(cfg, first_rank))
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.group.alive and self.group.rank == 0:
            try:
                self.group.broadcast_object(_STOP)
            except RankFailure:
                pass
        self.group.close()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        torch.set_num_threads(self.threads)


def start_rank0(cfg: EngineConfig) -> TPRanks:
    """Node 0's ranks, from the engine's process (rank 0); returns once every rank has joined."""
    if cfg.nnodes == 1 and cfg.dist_init_addr is None:
        cfg = cfg.replace(dist_init_addr=f"127.0.0.1:{free_port()}")
    return TPRanks(cfg, 0)


def send_setup(ranks: TPRanks, num_slots: int, table_shape: tuple[int, int]) -> None:
    """What rank 0 decided that every rank must share: the KV slots and the table's shape."""
    ranks.group.broadcast_object((num_slots, table_shape))


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)  # the engine's process is gone; so is this rank's reason to exist
        time.sleep(0.5)


def worker_main(cfg: EngineConfig, rank: int, parent: int | None = None) -> None:
    """A rank > 0: load its shards, then run each batch rank 0 sends until told to stop."""
    if parent is not None:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    logging.basicConfig(level=logging.WARNING)
    from ..loader import load_model

    per_node = cfg.tp_size // cfg.nnodes
    device = _rank_device(cfg, rank % per_node)
    if device.type == "cpu":
        torch.set_num_threads(_threads_per_rank(per_node))
    group = TPGroup(_spec(cfg, rank))
    try:
        loaded = load_model(cfg, device, tp_group=group)
        num_slots, (rows, cols) = group.broadcast_object()
        pool = loaded.model.make_kv_pool(loaded.dtype, device)
        pool.allocate(num_slots)
        table = ReqToTokenTable(rows, cols, device)
        runner = ModelRunner(loaded.model, pool, table, device)
        with torch.inference_mode():
            while (msg := group.broadcast_object()) != _STOP:
                if isinstance(msg, Step):
                    _apply(msg, table.table)
                    runner.forward(msg.batch)
    except RankFailure as e:
        logger.error("rank %d exits: %s", rank, e)
        os._exit(1)
    except BaseException:
        logger.exception("rank %d failed", rank)
        os._exit(1)  # rank 0's next collective fails: the engine ends with an error
    group.close()


def serve_node(cfg: EngineConfig) -> None:
    """A node other than 0 (`--node-rank R`): runs its ranks until the engine stops or one dies;
    the first in this process, the others as children."""
    per_node = cfg.tp_size // cfg.nnodes
    first = cfg.node_rank * per_node
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=worker_main, args=(cfg, rank, os.getpid()), daemon=True)
             for rank in range(first + 1, first + per_node)]
    for p in procs:
        p.start()
    worker_main(cfg, first)
    for p in procs:
        p.join()
