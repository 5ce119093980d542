"""A scripted model for HTTP tests: the engine's logits are replaced, step by step, by ones whose
top token goes on with a fixed text, so a test can make a real server "answer" like a reasoning
model or a tool caller would, and see what the server's constraints make of it.

Per row: the next token of the script wins (logit 10) while the output so far is a prefix of the
script; EOS comes second (5) and wins once the script is done or the output has left it (the
constraint refused the script's token); every other token is 0, lower ids first on ties (argmax).
The real constraint masks are applied after, as for any model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import uvicorn
from sgl.runtime import Engine
from sgl.runtime.server.app import create_app
from sgl.runtime.server.context import ServerSettings

SCRIPT_LOGIT, EOS_LOGIT = 10.0, 5.0


class ScriptedModel:
    """Wraps ``engine``'s sampling step; ``script`` is the text the model "wants" to write."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.script = engine, ""
        self.tokenizer = engine.tokenizer
        scheduler = engine._scheduler
        original = scheduler._sample_and_append

        def scripted(reqs: list[Any], logits: torch.Tensor) -> list[Any]:
            for row, r in enumerate(reqs):
                logits[row] = self.logits_row(r, logits.shape[-1], logits.dtype)
            return original(reqs, logits)

        scheduler._sample_and_append = scripted

    def next_token(self, output_ids: list[int], eos: int) -> int:
        text = self.tokenizer.decode(output_ids, skip_special_tokens=False)
        if not self.script.startswith(text) or text == self.script:
            return eos
        return self.tokenizer.encode(self.script[len(text):], add_special_tokens=False)[0]

    def logits_row(self, r: Any, width: int, dtype: torch.dtype) -> torch.Tensor:
        eos = min(r.eos_ids)
        row = torch.zeros(width, dtype=dtype)
        row[eos] = EOS_LOGIT
        row[self.next_token(r.output_ids, eos)] = SCRIPT_LOGIT
        return row


@contextmanager
def scripted_engine(model_path: str) -> Iterator[ScriptedModel]:
    engine = Engine(model_path, dtype="float32", max_total_tokens=4000)
    try:
        yield ScriptedModel(engine)
    finally:
        engine.shutdown()


@contextmanager
def serve(engine: Engine, settings: ServerSettings, port: int) -> Iterator[str]:
    """The url of an app over ``engine`` on a real uvicorn server on 127.0.0.1 in this process
    (the wrapped sampler lives in the engine's scheduler thread here); several apps (with their
    own settings) may serve one engine."""
    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the scripted server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def scripted_server(model_path: str, settings: ServerSettings, port: int) -> Iterator[tuple[str, ScriptedModel]]:
    """(url, model): a scripted engine behind one app."""
    with scripted_engine(model_path) as model, serve(model.engine, settings, port) as url:
        yield url, model
