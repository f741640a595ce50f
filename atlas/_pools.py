"""The process-wide thread pools, each made on first use and again after a fork.

- ``worker_pool()``: CPU work that releases the GIL (zstd, numpy, Numba kernels), one thread
  per core: decoding and compressing blocks, decompressing catalog columns.
- ``io_pool()``: requests to a remote store in flight at once (footers of many files): waiting,
  not computing, so more threads than cores. Local files are read on the calling thread.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

IO_THREADS = 16

_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}


def _pool(name: str, workers: int) -> ThreadPoolExecutor:
    found = _pools.get(name)
    if found is None or found[0] != os.getpid():  # a forked child gets threads of its own
        found = _pools[name] = (os.getpid(), ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"atlas-{name}"))
    return found[1]


def worker_pool() -> ThreadPoolExecutor:
    return _pool("worker", max(2, os.cpu_count() or 2))


def io_pool() -> ThreadPoolExecutor:
    return _pool("io", IO_THREADS)


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, on the worker pool when that helps: a task already running
    on a worker maps in place (waiting on its own pool could leave no thread to run the
    work)."""
    if len(items) < 2 or threading.current_thread().name.startswith("atlas-worker"):
        return [fn(item) for item in items]
    try:
        futures = [worker_pool().submit(fn, item) for item in items]
    except RuntimeError:  # the interpreter is shutting down (a flush at exit): no threads
        return [fn(item) for item in items]
    return [future.result() for future in futures]
