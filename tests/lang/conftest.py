"""Fixtures for the language tests: a deterministic mock backend and one real engine."""

from __future__ import annotations

import os
import sys

import pytest

# the mock backend lives beside the tests (tests/ is not a package)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lang_mock_backend import MockBackend  # noqa: E402


@pytest.fixture
def mock() -> MockBackend:
    return MockBackend()


class RecordingEngine:
    """Delegates to a real engine and records each generate call with its results' meta_info."""

    def __init__(self, engine) -> None:
        import threading

        self._engine = engine
        self._lock = threading.Lock()
        self.calls: list[dict] = []

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def generate(self, *args, **kwargs):
        out = self._engine.generate(*args, **kwargs)
        if kwargs.get("stream"):
            return self._record_stream(out, kwargs)
        metas = [o["meta_info"] for o in out] if isinstance(out, list) else [out["meta_info"]]
        with self._lock:
            self.calls.append({"kwargs": kwargs, "metas": metas})
        return out

    def _record_stream(self, chunks, kwargs):
        last = None
        for last in chunks:
            yield last
        with self._lock:
            self.calls.append({"kwargs": kwargs, "metas": [last["meta_info"]] if last else []})

    def reset(self) -> None:
        with self._lock:
            self.calls = []

    def prefilled_tokens(self) -> int:
        return sum(m["prompt_tokens"] - m["cached_tokens"] for c in self.calls for m in c["metas"])


@pytest.fixture(scope="session")
def engine():
    """The default model, loaded once per session."""
    from sgl.runtime import Engine

    eng = Engine(random_seed=0)
    yield eng
    eng.shutdown()


@pytest.fixture
def runtime(engine):
    """A Runtime backend over the shared engine, recording calls, with an empty cache."""
    import sgl

    rec = RecordingEngine(engine)
    engine.flush_cache()
    return sgl.Runtime.from_engine(rec)
