"""Storage wrappers for tests and benchmarks: count requests, add latency, inject faults.

Each wraps any :class:`Storage` and pickles through ``describe()`` as
``("wrapped", cls, inner description, *args)``, which :func:`atlas.storage.from_description`
reopens, so a wrapped store handle still works on dask workers. A "request" is one call that
would be one round trip to an object store: ``get_ranges`` counts once, because its ranges are
fetched concurrently (``ranges`` counts them one by one).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any, Sequence

from atlas.storage._base import Storage

# Calls that reach the store, and which of them write.
REQUESTS = ("get", "get_range", "get_ranges", "put", "delete", "list", "publish",
            "read_manifest", "commit")
WRITES = ("put", "delete", "publish", "commit")


class StorageWrapper(Storage):
    """Forwards every call to ``inner``; subclasses hook :meth:`_request`."""

    def __init__(self, inner: Storage):
        self.inner = inner

    def _args(self) -> tuple:
        """Constructor arguments after ``inner``, for :meth:`describe`."""
        return ()

    def describe(self) -> tuple:
        return ("wrapped", type(self), self.inner.describe(), *self._args())

    def _request(self, op: str, key: str, call, *args: Any):
        return call(*args)

    @property
    def read_only(self) -> bool:  # type: ignore[override]
        return self.inner.read_only

    @property
    def location(self) -> str:
        return self.inner.location

    def get(self, key: str) -> bytes:
        return self._request("get", key, self.inner.get, key)

    def get_range(self, key: str, offset: int, length: int, expected_size: int | None = None):
        return self._request("get_range", key, self.inner.get_range, key, offset, length,
                             expected_size)

    def get_ranges(self, key: str, offsets: Sequence[int], lengths: Sequence[int],
                   expected_size: int | None = None) -> list:
        return self._request("get_ranges", key, self.inner.get_ranges, key, offsets, lengths,
                             expected_size)

    def put(self, key: str, data: bytes) -> None:
        return self._request("put", key, self.inner.put, key, data)

    def delete(self, key: str) -> None:
        return self._request("delete", key, self.inner.delete, key)

    def list(self, prefix: str = "") -> list[tuple[str, int, float]]:
        return self._request("list", prefix, self.inner.list, prefix)

    def keys(self, prefix: str = "") -> list[str]:
        return self._request("list", prefix, self.inner.keys, prefix)

    def spill_path(self, key: str) -> str:
        return self.inner.spill_path(key)

    def publish(self, key: str, path: str) -> None:
        return self._request("publish", key, self.inner.publish, key, path)

    def release_spill(self, key: str, path: str) -> None:
        self.inner.release_spill(key, path)

    def sync_early(self, paths: Sequence[str]) -> None:
        self.inner.sync_early(paths)

    def discard(self, key: str, path: str) -> None:
        self.inner.discard(key, path)

    def read_manifest(self, key: str):
        return self._request("read_manifest", key, self.inner.read_manifest, key)

    def commit(self, key: str, data: bytes, expected):
        return self._request("commit", key, self.inner.commit, key, data, expected)

    @property
    def locks_spills(self) -> bool:  # type: ignore[override]
        return self.inner.locks_spills

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return self.inner.remote

    def remove_unused(self, key: str) -> bool:
        return self._request("delete", key, self.inner.remove_unused, key)

    def commit_lock(self):
        return self.inner.commit_lock()

    def commit_turn(self):
        return self.inner.commit_turn()

    def layout_problems(self) -> list[str]:
        return self.inner.layout_problems()

    def leftovers(self) -> list[tuple[str, float]]:
        return self.inner.leftovers()

    def remove_leftovers(self, grace: float) -> list[str]:
        return self.inner.remove_leftovers(grace)

    def close(self) -> None:
        self.inner.close()


class CountingStorage(StorageWrapper):
    """Counts requests per operation, byte ranges and bytes read, and remembers the keys read."""

    def __init__(self, inner: Storage):
        super().__init__(inner)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.counts: Counter = Counter()
            self.ranges = 0
            self.bytes_read = 0
            self.keys_read: list[str] = []

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    @property
    def reads(self) -> int:
        return sum(self.counts[op] for op in ("get", "get_range", "get_ranges", "read_manifest"))

    def _request(self, op, key, call, *args):
        result = call(*args)
        with self._lock:
            self.counts[op] += 1
            if op in ("get", "get_range", "get_ranges", "read_manifest"):
                self.keys_read.append(key)
            if op == "get_ranges":
                self.ranges += len(args[1])
                self.bytes_read += sum(len(b) for b in result)
            elif op in ("get", "get_range"):
                self.ranges += 1
                self.bytes_read += len(result)
            elif op == "read_manifest" and result is not None:
                self.ranges += 1
                self.bytes_read += len(result[0])
        return result


class LatencyStorage(StorageWrapper):
    """Sleeps ``latency`` seconds per request, as a round trip to a remote store would."""

    def __init__(self, inner: Storage, latency: float = 0.02):
        super().__init__(inner)
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        self.latency = float(latency)

    def _args(self) -> tuple:
        return (self.latency,)

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return True

    def _request(self, op, key, call, *args):
        time.sleep(self.latency)
        return call(*args)


class InjectedFault(ConnectionError):
    """A request failed on purpose by :class:`FaultyStorage`."""


class FaultyStorage(StorageWrapper):
    """Fails a fraction ``rate`` of the write requests in ``ops`` with :class:`InjectedFault`.

    ``when="before"``: the request never reaches the store. ``when="after"``: it does, and
    its response is lost (the writer cannot tell whether it landed). Seeded, so runs repeat.
    """

    def __init__(self, inner: Storage, rate: float = 0.3, seed: int = 0,
                 ops: Sequence[str] = WRITES, when: str = "before"):
        super().__init__(inner)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate}")
        unknown = sorted(set(ops) - set(REQUESTS))
        if unknown:
            raise ValueError(f"unknown operations {unknown}; known: {list(REQUESTS)}")
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', got {when!r}")
        self.rate, self.seed, self.ops, self.when = float(rate), seed, tuple(ops), when
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: list[tuple[str, str]] = []  # (operation, key) of every fault
        self.enabled = True

    def _args(self) -> tuple:
        return (self.rate, self.seed, self.ops, self.when)

    def _fails(self, op: str, key: str) -> bool:
        if not self.enabled or op not in self.ops:
            return False
        with self._lock:
            if self._random.random() >= self.rate:
                return False
            self.injected.append((op, key))
            return True

    def _request(self, op, key, call, *args):
        fails = self._fails(op, key)
        if fails and self.when == "before":
            raise InjectedFault(f"{self.location}/{key}: injected {op} failure")
        result = call(*args)
        if fails:
            raise InjectedFault(f"{self.location}/{key}: injected {op} failure "
                                "(after the request landed)")
        return result
