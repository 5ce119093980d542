"""The tensor-parallel process group: one rank per process, `tp_size` in all, across `nnodes`
nodes. Activations are reduced over the device backend (gloo on the CPU, NCCL on CUDA); control
messages (each scheduled batch, rank 0 -> all) go over a gloo group, which carries pickled
objects on any device.

NOTE (no hang): a collective with a dead peer fails (gloo: the peer's socket closes; else the
group's timeout) and raises `RankFailure`, which the engine treats as fatal."""

from __future__ import annotations

import datetime
import pickle
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT_S = 60  # a collective waiting longer than this on a silent peer fails


class RankFailure(RuntimeError):
    """A tensor-parallel peer is gone: the engine cannot compute any more (fatal)."""

    fatal = True


@dataclass(frozen=True)
class TPSpec:
    """Where one rank sits: `tp_size` ranks in all, `tp_size // nnodes` per node."""

    tp_size: int
    rank: int
    init_addr: str  # HOST:PORT of rank 0's rendezvous
    device: str = "cpu"  # cpu | cuda

    @property
    def backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TPGroup:
    """This process's rank in the group, and the collectives the sharded layers call."""

    def __init__(self, spec: TPSpec) -> None:
        self.spec, self.rank, self.size = spec, spec.rank, spec.tp_size
        timeout = datetime.timedelta(seconds=TIMEOUT_S)
        dist.init_process_group(spec.backend, init_method=f"tcp://{spec.init_addr}", rank=spec.rank,
                                world_size=spec.tp_size, timeout=timeout)
        self.control = dist.new_group(backend="gloo", timeout=timeout) if spec.backend != "gloo" else None
        self.alive = True

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of x (in place; returns x)."""
        try:
            dist.all_reduce(x)
        except Exception as e:
            raise self._failure("all-reduce", e) from None
        return x

    def all_gather_last(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n) on every rank -> (..., size * n), rank after rank along the last dim."""
        parts = [torch.empty_like(x) for _ in range(self.size)]
        try:
            dist.all_gather(parts, x.contiguous())
        except Exception as e:
            raise self._failure("all-gather", e) from None
        return torch.cat(parts, dim=-1)

    def broadcast_object(self, obj: Any = None) -> Any:
        """Rank 0's obj on every rank (pickled, over the gloo group): a length, then the bytes."""
        try:
            if self.rank == 0:
                data = torch.frombuffer(bytearray(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)),
                                        dtype=torch.uint8)
                size = torch.tensor([data.numel()], dtype=torch.int64)
            else:
                size = torch.zeros(1, dtype=torch.int64)
            dist.broadcast(size, 0, group=self.control)
            if self.rank != 0:
                data = torch.empty(int(size.item()), dtype=torch.uint8)
            dist.broadcast(data, 0, group=self.control)
        except Exception as e:
            raise self._failure("broadcast", e) from None
        return obj if self.rank == 0 else pickle.loads(data.numpy().tobytes())

    def _failure(self, what: str, e: Exception) -> RankFailure:
        self.alive = False
        return RankFailure(f"tensor parallelism: a rank is gone ({what} on rank {self.rank} of {self.size} "
                           f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); the engine is down: "
                           "restart it, on every node")

    def close(self) -> None:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # a peer is gone already: nothing left to tear down cleanly
                pass
