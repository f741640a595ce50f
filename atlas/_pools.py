"""The process-wide thread pools, each made on first use and again after a fork.

- ``worker_pool()``: CPU work that releases the GIL (zstd, numpy, Numba kernels), one thread
  per core: decoding and compressing blocks, decompressing catalog columns, parsing an index
  while the caller reads the catalog.
- ``io_pool()``: waiting, not computing, so more threads than cores: requests to a remote store
  in flight at once (footers of many files), a flush's early fsyncs of its segment files.
  Local files are read on the calling thread.

``run_shared`` spreads a list of tasks over the worker threads and the calling thread.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence

IO_THREADS = 16

_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}


def _pool(name: str, workers: int) -> ThreadPoolExecutor:
    found = _pools.get(name)
    if found is None or found[0] != os.getpid():  # a forked child gets threads of its own
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"atlas-{name}")
        _shut_down_at_exit(pool)
        found = _pools[name] = (os.getpid(), pool)
    return found[1]


def _shut_down_at_exit(pool: ThreadPoolExecutor) -> None:
    """Shut ``pool`` down, without waiting, when the interpreter exits, before it joins the
    threads. concurrent.futures wakes the worker threads it registered; a Ctrl-C that lands
    while a worker thread starts leaves that thread running but unregistered, blocked on the
    pool's queue, and the exit would wait for it forever. A shut-down pool wakes all of them.
    (CPython's hook for this, the one concurrent.futures itself uses; without it, nothing.)"""
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return
    try:
        register(pool.shutdown, wait=False)
    except RuntimeError:  # made while the interpreter shuts down: it is not waited for anyway
        pass


def worker_pool() -> ThreadPoolExecutor:
    return _pool("worker", max(2, os.cpu_count() or 2))


def on_worker_thread() -> bool:
    """Whether the caller is one of ``worker_pool``'s threads (which must not wait on work it
    submits to that pool: every worker might be waiting)."""
    return threading.current_thread().name.startswith("atlas-worker")


def io_pool() -> ThreadPoolExecutor:
    return _pool("io", IO_THREADS)


_DONE = object()  # what the tasks iterator gives when it runs out


def run_shared(tasks: Sequence[Any], run: Callable[[Any], None]) -> None:
    """``run(task)`` for every task, on the worker threads and on the calling thread, each
    taking the next task when it finishes one; returns when all are done, raising the first
    error (no task starts after one has failed).

    The caller works instead of waiting: a thread that sleeps until a task is done takes a
    while to wake on a small virtual machine (up to milliseconds where the CPU it slept on
    went idle), and the caller would sleep and wake once per task, each time also taking the
    GIL from a worker. A helper that has not started when the caller runs out of tasks is
    cancelled, so a caller that is itself a worker thread never waits on a queued helper."""
    pending = iter(tasks)
    lock = threading.Lock()
    failed: list[BaseException] = []

    def drain() -> None:
        while not failed:
            with lock:
                task = next(pending, _DONE)
            if task is _DONE:
                return
            try:
                run(task)
            except BaseException as err:
                failed.append(err)
                raise

    pool = worker_pool()
    helpers = [pool.submit(drain) for _ in range(min(pool._max_workers, len(tasks)) - 1)]
    try:
        drain()
    finally:
        for helper in helpers:  # the tasks they took write where the caller's results go
            if not helper.cancel():
                wait([helper])
    if failed:
        raise failed[0]
