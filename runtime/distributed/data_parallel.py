"""`DataParallelEngine`: `dp_size` engine replicas in this process behind one Engine-shaped front
that routes each prompt with `PrefixRouter` (cache-aware by default), so the server (`--dp-size`)
and `sgl.Runtime.from_engine` use it unchanged.

Each replica is a whole `Engine` (its own scheduler thread, radix cache and KV pool); a batch is
split per prompt, each prompt routed on its text or token ids, and the results put back in order.
NOTE: replicas that are themselves tensor-parallel need a torch.distributed group each, and a
process holds one: run those as separate servers (`--tp-size N`) behind sglang-router instead."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..engine import Engine
from .prefix_router import BLOCK_TOKENS, PrefixRouter

_SUMMED = ("num_waiting_reqs", "num_running_reqs", "free_slots", "cached_tokens", "evictable_tokens", "held_slots")


def _prompts(prompt: Any, input_ids: Any) -> tuple[list[dict[str, Any]], bool]:
    """Per-prompt inputs ({"prompt": text} or {"input_ids": ids}) and whether the call was a batch."""
    if prompt is not None and input_ids is not None:
        raise ValueError("give exactly one of `prompt` (text) or `input_ids` (token ids)")
    if isinstance(prompt, list):
        return [{"prompt": p} for p in prompt], True
    if isinstance(input_ids, list) and input_ids and isinstance(input_ids[0], list):
        return [{"input_ids": ids} for ids in input_ids], True
    return [{"prompt": prompt} if input_ids is None else {"input_ids": input_ids}], False


def _key(inputs: dict[str, Any]) -> Any:
    return inputs.get("prompt") if inputs.get("input_ids") is None else inputs["input_ids"]


class DataParallelEngine:
    """`DataParallelEngine(model_path, dp_size=2, load_balance_method="cache_aware", **engine_args)`."""

    def __init__(self, model_path: str | None = None, dp_size: int = 2, load_balance_method: str = "cache_aware",
                 **engine_args: Any) -> None:
        if dp_size < 1:
            raise ValueError(f"dp_size={dp_size}: must be at least 1")
        if engine_args.get("tp_size", 1) > 1 and dp_size > 1:
            raise ValueError(f"dp_size={dp_size} with tp_size={engine_args['tp_size']}: one process holds one "
                             "tensor-parallel group; start dp_size servers with --tp-size and put sglang-router "
                             "in front of them (README: past one machine)")
        self.replicas: list[Engine] = []
        try:
            for _ in range(dp_size):
                self.replicas.append(Engine(model_path, **engine_args))
        except BaseException:
            self.shutdown()
            raise
        first = self.replicas[0]
        self.router = PrefixRouter(dp_size, load_balance_method, capacity_blocks=first.num_slots // BLOCK_TOKENS)
        self.dp_size, self.load_balance_method = dp_size, load_balance_method
        self._pool = ThreadPoolExecutor(max_workers=512, thread_name_prefix="sgl-dp")

    def __getattr__(self, name: str) -> Any:  # tokenizer, model_config, context_length, ...: every replica's
        if name == "replicas":
            raise AttributeError(name)
        return getattr(self.replicas[0], name)

    # ---- generation ----------------------------------------------------------------------
    def generate(self, prompt: Any = None, sampling_params: Any = None, input_ids: Any = None,
                 stream: bool = False, rid: Any = None, **kwargs: Any) -> Any:
        """As Engine.generate; each prompt of a batch is routed on its own."""
        if kwargs.get("input_embeds") is not None or kwargs.get("image_data") is not None:
            return self._on(None, lambda e: e.generate(prompt, sampling_params, input_ids, stream=stream,
                                                       rid=rid, **kwargs))
        inputs, is_batch = _prompts(prompt, input_ids)
        if not is_batch:
            one = inputs[0]
            if stream:
                return self._stream(_key(one), sampling_params, rid, one, kwargs)
            return self._on(_key(one), lambda e: e.generate(sampling_params=sampling_params, rid=rid, **one,
                                                            **kwargs))
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(inputs)
        rids = rid if isinstance(rid, list) else [rid] * len(inputs)
        if len(params) != len(inputs) or len(rids) != len(inputs):
            raise ValueError("sampling_params and rid lists must have one entry per prompt")
        if stream:
            raise ValueError("stream=True takes one prompt with n=1")
        picks = [self.router.choose(_key(x)) for x in inputs]  # in order: routing is deterministic
        futures = [self._pool.submit(self._run, i, lambda e, x=x, p=p, r=r: e.generate(sampling_params=p, rid=r,
                                                                                     **x, **kwargs))
                   for i, x, p, r in zip(picks, inputs, params, rids)]
        out: list[dict] = []
        for f in futures:
            result = f.result()
            out.extend(result if isinstance(result, list) else [result])
        return out

    def encode(self, prompt: Any = None, input_ids: Any = None, rid: Any = None) -> Any:
        return self._on(None, lambda e: e.encode(prompt, input_ids, rid))

    def _on(self, key: Any, fn: Any) -> Any:
        return self._run(self.router.choose(key), fn)

    def _run(self, i: int, fn: Any) -> Any:
        try:
            return fn(self.replicas[i])
        finally:
            self.router.done(i)

    def _stream(self, key: Any, sampling_params: Any, rid: Any, one: dict, kwargs: dict) -> Iterator[dict]:
        i = self.router.choose(key)
        try:
            it = self.replicas[i].generate(sampling_params=sampling_params, rid=rid, stream=True, **one, **kwargs)
        except BaseException:
            self.router.done(i)
            raise
        return self._counted(i, it)

    def _counted(self, i: int, it: Iterator[dict]) -> Iterator[dict]:
        try:
            yield from it
        finally:
            self.router.done(i)

    # ---- control -------------------------------------------------------------------------
    def abort(self, rid: str) -> None:
        for e in self.replicas:  # an id unknown to a replica is a no-op there
            e.abort(rid)

    def flush_cache(self) -> bool:
        return all([e.flush_cache() for e in self.replicas])

    def check_kv(self) -> None:
        for e in self.replicas:
            e.check_kv()

    def get_server_info(self) -> dict[str, Any]:
        infos = [e.get_server_info() for e in self.replicas]
        merged = dict(infos[0])
        for k in _SUMMED:
            if k in merged:
                merged[k] = sum(info[k] for info in infos)
        return {**merged, "dp_size": self.dp_size, "load_balance_method": self.load_balance_method,
                "replicas": infos, "replica_loads": list(self.router.loads)}

    def shutdown(self) -> None:
        for e in self.replicas:
            e.shutdown()
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.shutdown(wait=False)

    def __enter__(self) -> DataParallelEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
