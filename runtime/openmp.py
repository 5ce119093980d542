"""One OpenMP worker pool at a time.

libgomp (the OpenMP runtime torch ships on Linux) gives every thread that runs a parallel region
its own pool of worker threads and keeps it until that thread exits. While the pools together
hold more threads than there are CPUs, libgomp cuts its spin-wait from 300,000 to 100 spins, so
every parallel region (each matmul, each SDPA call) wakes its workers through a futex instead.
On 2 cores, with the loading thread's pool still alive, the scheduler thread decoded at 19 tok/s
instead of 27 and prefilled at 1,960 tok/s instead of 2,980.

So the engine frees the pool of the thread that loaded the model, and the scheduler thread frees
its own whenever it goes idle (so a caller's own torch work is not slowed either). A freed pool
comes back on the thread's next parallel region; only the threads are freed, no setting changes.
"""

from __future__ import annotations

import ctypes
import functools

OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: free the threads, keep the settings
RUNTIME_NAMES = ("libgomp", "libomp", "libiomp")


@functools.cache
def _pause_functions() -> tuple[ctypes._CFuncPtr, ...]:
    """omp_pause_resource_all of every OpenMP runtime this process has loaded. There can be
    several: torch's libgomp, and private copies that wheels bundle (sentencepiece has one).
    NOTE: looked up once (reading /proc/self/maps costs ~1 ms): the engine first calls after
    loading the model and its tokenizer, when every runtime it uses is in."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if any(n in line for n in RUNTIME_NAMES)}
    except OSError:  # not Linux: nothing to do
        return ()
    return tuple(fn for fn in map(_pause_function, sorted(paths)) if fn is not None)


@functools.cache
def _pause_function(path: str) -> ctypes._CFuncPtr | None:
    try:
        fn = ctypes.CDLL(path).omp_pause_resource_all  # OpenMP 5.0
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


def release_thread_pool() -> bool:
    """Frees the calling thread's OpenMP worker threads (no other thread's) in every loaded
    runtime. Returns False when none is loaded or one refused (inside a parallel region)."""
    fns = _pause_functions()
    return bool(fns) and all([fn(OMP_PAUSE_SOFT) == 0 for fn in fns])
