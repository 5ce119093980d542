"""The Engine's awaitable faces: `generate` run on a worker thread, and a stream read from an
async for loop (each chunk fetched by the event loop's default executor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

_END = object()  # next()'s default once the stream is exhausted


class AsyncAPI:
    def generate(self, *args: Any, **kwargs: Any) -> Any: ...  # noqa: D102 (the Engine's)

    async def async_generate(self, *args: Any, **kwargs: Any) -> Any:
        """Awaitable `generate`; with stream=True, use `async for` over `async_stream`."""
        if kwargs.get("stream"):
            raise ValueError("use `async for chunk in engine.async_stream(...)` to stream")
        return await asyncio.to_thread(self.generate, *args, **kwargs)

    async def async_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict]:
        kwargs["stream"] = True
        it = self.generate(*args, **kwargs)
        loop = asyncio.get_running_loop()
        try:
            while (item := await loop.run_in_executor(None, next, it, _END)) is not _END:
                yield item
        finally:
            it.close()
