"""The process-wide thread pools, each made on first use and again after a fork.

- ``worker_pool()``: CPU work that releases the GIL (zstd, numpy, Numba kernels), one thread
  per core: decoding and compressing blocks, decompressing catalog columns, parsing an index
  while the caller reads the catalog.
- ``io_pool()``: waiting, not computing, so more threads than cores: requests to a remote store
  in flight at once (footers of many files), a flush's early fsyncs of its segment files.
  Local files are read on the calling thread.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

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


def on_worker_thread() -> bool:
    """Whether the caller is one of ``worker_pool``'s threads (which must not wait on work it
    submits to that pool: every worker might be waiting)."""
    return threading.current_thread().name.startswith("atlas-worker")


def io_pool() -> ThreadPoolExecutor:
    return _pool("io", IO_THREADS)

