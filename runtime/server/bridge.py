"""EngineBridge: runs the engine's blocking calls for the event loop, and aborts requests whose
HTTP client went away.

The engine's scheduler thread batches every submitted request; the bridge only waits. Waiting
happens on a large thread pool of its own (a blocked thread costs little), so that hundreds of
concurrent HTTP requests reach the scheduler together instead of queueing behind asyncio's small
default pool.

NOTE (abort race): a disconnect can be seen before the worker thread has queued the request, and
an abort that arrives first is a no-op. So aborting repeats until the engine call returns:
streams re-send the abort after each chunk, blocking calls every 0.2 s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import Request

logger = logging.getLogger("sgl.server")
_END = object()


class ClientGone(Exception):
    """The HTTP client disconnected before its result was ready."""


class EngineFailure(Exception):
    """The engine ended a request because a step failed (finish_reason abort, status 500): the
    route answers an internal error naming it instead of a normal result."""


def raise_engine_failure(results: Any) -> None:
    """Raises EngineFailure if any result (a dict or a list of them) was ended by an engine error."""
    for r in results if isinstance(results, list) else [results]:
        reason = r["meta_info"]["finish_reason"] or {}
        if reason.get("type") == "abort" and reason.get("status_code") == 500:
            raise EngineFailure(reason.get("message", "engine error"))


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def wait_disconnect(request: Request) -> None:
    """Returns when the client disconnects (call only after the body was read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class EngineBridge:
    def __init__(self, engine: Any, max_threads: int = 2048) -> None:
        self.engine = engine
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="sgl-http")

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs a blocking call on the bridge's pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def abort(self, rids: Sequence[str]) -> None:
        for rid in rids:
            self.engine.abort(rid)

    async def generate(self, request: Request | None, rids: Sequence[str], **kwargs: Any) -> Any:
        """`engine.generate(**kwargs)` (not streaming); aborts `rids` and raises ClientGone if the
        client disconnects first."""
        task = asyncio.ensure_future(self.call(self.engine.generate, **kwargs))
        watcher = asyncio.ensure_future(wait_disconnect(request)) if request is not None else None
        try:
            waiting = {task} if watcher is None else {task, watcher}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                result = task.result()
                raise_engine_failure(result)
                return result
            raise ClientGone()
        finally:
            if watcher is not None:
                watcher.cancel()
            if not task.done():
                asyncio.ensure_future(self._abort_until_done(task, rids))

    async def _abort_until_done(self, task: asyncio.Future, rids: Sequence[str]) -> None:
        while not task.done():
            self.abort(rids)
            await asyncio.wait({task}, timeout=0.2)
        task.exception()  # retrieved, so asyncio does not log it

    async def open_stream(self, rid: str, **kwargs: Any) -> Iterator[dict]:
        """Validates and returns the engine's stream iterator (raises ValueError on bad input)."""
        return await self.call(self.engine.generate, stream=True, rid=rid, **kwargs)

    async def merge_streams(self, streams: Sequence[tuple[str, Iterator[dict]]]) -> AsyncIterator[tuple[int, dict]]:
        """Yields (stream index, latest cumulative chunk) from several engine streams at once.

        Chunks that pile up while the consumer is slow are collapsed to the latest one (they are
        cumulative). When the consumer stops early (the client disconnected), every stream that
        has not finished is aborted, which frees its KV slots.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stopped = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stopped.set()

        def pump(index: int, rid: str, it: Iterator[dict]) -> None:
            try:
                for chunk in it:
                    if stopped.is_set():
                        self.engine.abort(rid)  # queued by now, so this abort lands
                    else:
                        put((index, chunk))
            except BaseException as e:  # reported to the consumer, which ends the response
                put((index, _Failure(e)))
            finally:
                put((index, _END))

        for i, (rid, it) in enumerate(streams):
            loop.run_in_executor(self.executor, pump, i, rid, it)
        open_streams = len(streams)
        finished: set[int] = set()
        try:
            while open_streams:
                latest: dict[int, dict] = {}
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                for index, item in items:
                    if item is _END:
                        open_streams -= 1
                    elif isinstance(item, _Failure):
                        raise item.error
                    else:
                        latest[index] = item
                for index, chunk in latest.items():
                    raise_engine_failure(chunk)
                    if chunk["meta_info"]["finish_reason"] is not None:
                        finished.add(index)
                    yield index, chunk
        finally:
            if len(finished) < len(streams):
                stopped.set()
                self.abort([rid for i, (rid, _) in enumerate(streams) if i not in finished])

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
