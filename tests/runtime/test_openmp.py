"""The engine keeps one OpenMP worker pool alive at a time (runtime/openmp.py)."""

from __future__ import annotations

import os
import threading

import pytest
import torch
from sgl.runtime.openmp import release_thread_pool

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                                reason="needs Linux and at least 2 torch threads")


def thread_ids() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def run_in_thread(fn) -> object:
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.setdefault("out", fn()))
    t.start()
    t.join()
    return box["out"]


def test_release_frees_the_calling_threads_workers() -> None:
    """The threads a parallel region starts on this thread (its pool) are gone after release and
    come back with the next region. NOTE: by thread id, not by count: threads of earlier tests
    may still be exiting."""

    def work_release_work() -> tuple[set[int], set[int], set[int], bool]:
        x = torch.ones(1 << 22)  # (filling it may already start a pool: free it first)
        release_thread_pool()
        before = thread_ids()
        x.mul_(2)  # aten's parallel_for (not MKL, which may pick 1 thread): this thread now owns a pool
        workers = thread_ids() - before
        released = release_thread_pool()
        after = thread_ids()
        x.mul_(2)
        return workers, after, thread_ids() - after, released

    workers, after, again, released = run_in_thread(work_release_work)
    assert released
    assert workers and not workers & after  # started by the region, freed by the release
    assert again  # the next region starts a pool again


def test_engine_frees_the_loading_threads_pool_and_its_own_when_idle(tmp_path, default_tokenizer_folder,
                                                                    monkeypatch) -> None:
    import sgl.runtime.engine as engine_module
    from llama_fixtures import save_tiny_checkpoint, tiny_llama_config

    released_on: list[str] = []
    monkeypatch.setattr(engine_module, "release_thread_pool",
                        lambda: released_on.append(threading.current_thread().name) or True)
    folder = save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path), default_tokenizer_folder)
    with engine_module.Engine(folder, dtype="float32") as engine:
        assert released_on == [threading.current_thread().name]  # the loading thread, at once
        for _ in range(2):
            engine.generate(input_ids=list(range(3, 40)), sampling_params={"max_new_tokens": 4})
            for _ in range(100):  # the scheduler frees its pool once it finds itself idle
                if released_on.count("sgl-scheduler") == 1:
                    break
                threading.Event().wait(0.01)
            assert released_on.count("sgl-scheduler") == 1
            released_on.remove("sgl-scheduler")
