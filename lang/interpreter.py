"""Running programs: one state, a batch on a thread pool, and prefix caching."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from sgl.executor import StreamExecutor
from sgl.global_config import global_config
from sgl.ir import SamplingParams
from sgl.state import ProgramState

if TYPE_CHECKING:
    from sgl.function import SglFunction

_default_lock = threading.Lock()


def resolve_backend(backend: Any) -> Any:
    """The given backend, else the default one; the first use with none set starts the
    in-process engine with the default model (``sgl.Runtime()``)."""
    if backend is not None:
        return backend
    with _default_lock:
        if global_config.default_backend is None:
            from sgl.backend.runtime import Runtime

            global_config.default_backend = Runtime()
        return global_config.default_backend


def run_program(
    program: SglFunction,
    backend: Any,
    args: tuple,
    kwargs: dict[str, Any],
    default_sampling: SamplingParams,
    stream: bool = False,
    sync: bool = False,
    use_thread: bool = True,
) -> ProgramState:
    """Start one program; returns its state at once (or after it ends, with ``sync``)."""
    backend = resolve_backend(backend)
    kwargs = {**kwargs, **program.bind_arguments}
    executor = StreamExecutor(backend, kwargs, default_sampling, stream=stream, use_thread=use_thread)
    state = ProgramState(executor)
    if stream:
        # the program's own code runs on a thread too, so the caller can read the stream
        threading.Thread(target=_run_body, args=(state, program, args, kwargs, sync), daemon=True).start()
    else:
        _run_body(state, program, args, kwargs, sync)
    return state


def _run_body(state: ProgramState, program: SglFunction, args: tuple, kwargs: dict, sync: bool) -> None:
    try:
        state.ret_value = program.func(state, *args, **kwargs)
    finally:
        state.stream_executor.end()
    if sync:
        state.sync()


def cache_program(program: SglFunction, backend: Any) -> str:
    """Trace the program's constant prefix and have the backend cache it (when long enough)."""
    from sgl.tracer import extract_prefix_by_tracing

    backend = resolve_backend(backend)
    prefix = extract_prefix_by_tracing(program, backend)
    if len(prefix) > global_config.precache_min_chars:
        backend.cache_prefix(prefix)
    return prefix


def run_program_batch(
    program: SglFunction,
    backend: Any,
    batch_kwargs: list[dict[str, Any]],
    default_sampling: SamplingParams,
    num_threads: int | str = "auto",
    progress_bar: bool = False,
    generator_style: bool = False,
) -> list[ProgramState] | Iterator[ProgramState]:
    """Run many programs on a thread pool; states come back in input order."""
    backend = resolve_backend(backend)
    if global_config.enable_precache_with_tracing and len(batch_kwargs) > 1:
        cache_program(program, backend)
    if num_threads == "auto":
        num_threads = max(96, (os.cpu_count() or 1) * 16)
    num_threads = max(1, min(int(num_threads), len(batch_kwargs)))

    def one(kwargs: dict[str, Any]) -> ProgramState:
        return run_program(program, backend, (), kwargs, default_sampling, sync=True)

    if generator_style:
        return _batch_generator(one, batch_kwargs, num_threads)
    with ThreadPoolExecutor(num_threads) as pool:
        futures = [pool.submit(one, kw) for kw in batch_kwargs]
        if progress_bar:
            import tqdm

            for _ in tqdm.tqdm(as_completed(futures), total=len(futures)):
                pass
        return [f.result() for f in futures]


def _batch_generator(one, batch_kwargs: list[dict], num_threads: int) -> Iterator[ProgramState]:
    """Yield states in input order as soon as each (and all before it) has finished."""
    with ThreadPoolExecutor(num_threads) as pool:
        futures = [pool.submit(one, kw) for kw in batch_kwargs]
        for f in futures:
            yield f.result()
