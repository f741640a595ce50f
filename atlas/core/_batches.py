"""ML batches: shuffled stacked reads of one array, the next batch read in the background."""

from __future__ import annotations

import queue
import sys
import threading
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from atlas.errors import ArrayNotFoundError

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas

_DONE = object()


def check_count(what: str, value: object, least: int) -> int:
    """An int argument (numpy's too) of at least ``least``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int >= {least}, got {value!r}")
    if value < least:
        raise ValueError(f"{what} must be an int >= {least}, got {value!r}")
    return int(value)


def batches(store: "Atlas", array: str, dataset_names: Sequence[str] | None = None,
            batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
            start: Sequence[int] | None = None, shape: Sequence[int] | None = None,
            drop_last: bool = False, prefetch: int = 1) -> Iterator[tuple[list[str], np.ndarray]]:
    """Check everything up front, then return the iterator of (names, batch) pairs."""
    batch_size = check_count("batch_size", batch_size, 1)
    prefetch = check_count("prefetch", prefetch, 0)
    if dataset_names is None:
        names, slots, schema_ids = store._holding(array)
        if not names:
            raise ArrayNotFoundError(f"no dataset in {store.location} has an array {array!r}")
    else:
        names, slots, schema_ids = store._stack_rows(array, dataset_names)
        names = list(names) if names is not None else store.list_datasets()
        if not names:
            raise ValueError("dataset_names is empty; nothing to batch")
    dtype, start_t, window = store._common_window(array, names, schema_ids, start, shape)
    order = np.random.default_rng(seed).permutation(len(names)) if shuffle \
        else np.arange(len(names))
    cuts = list(range(0, len(names), batch_size))
    if drop_last and len(names) % batch_size:
        cuts = cuts[:-1]
    picks = [order[c : c + batch_size] for c in cuts]

    pool = _BatchArrays((min(batch_size, len(names)), *window), dtype, keep=prefetch + 3)
    found = {"epoch": store._catalog.epoch, "slots": slots, "schema_ids": schema_ids}

    def rows() -> tuple[np.ndarray, np.ndarray]:
        """The slots and schema ids of the datasets, found again by name when something moved
        them since (a flush that rebased renumbers new datasets' slots, a resize gives another
        schema): read with the old ones, a batch held another writer's data, or a false
        CorruptionError."""
        epoch = store._catalog.epoch
        if epoch != found["epoch"]:
            _names, now_slots, now_ids = store._stack_rows(array, names)
            try:
                now = store._common_window(array, names, now_ids, start, shape)
            except ValueError as err:  # windows that differ now (OutOfBoundsError too)
                raise type(err)(f"array {array!r} was resized or redefined since batches() "
                                f"was called: {err}; call batches() again") from None
            if (now[0], tuple(now[1]), tuple(now[2])) != (dtype, tuple(start_t), tuple(window)):
                raise ValueError(f"array {array!r} was resized or redefined since batches() "
                                 f"was called (windows of {now[0].name} {list(now[2])} now, "
                                 f"{dtype.name} {list(window)} then); call batches() again")
            found.update(epoch=epoch, slots=now_slots, schema_ids=now_ids)
        return found["slots"], found["schema_ids"]

    lock = store._reading_ahead() if prefetch else store._held()

    def read(pick: np.ndarray) -> tuple[list[str], np.ndarray]:
        out = pool.take(len(pick))
        with lock:  # on the read-ahead thread: not in the middle of a write
            slots_now, ids_now = rows()
            store._read(array, slots_now[pick], ids_now[pick], start_t, window, out)
        return [names[i] for i in pick], out

    if prefetch == 0:
        return (read(p) for p in picks)
    return _prefetched(picks, read, prefetch)


class _BatchArrays:
    """Arrays for full batches, each reused once nothing outside this pool refers to it.

    A fresh array of tens of MB costs a page fault per 4 KiB page on first touch (~30% of a batch
    read here); reusing one avoids that. The caller gets a view of a pooled array, never the
    array itself, so what it does to the view (reshape it, make it read-only) stays with the view.
    A pooled array is reused only when its reference count shows that every view of it (the
    caller's, numpy views of that, a ``torch.from_numpy`` tensor) is gone, so a batch the caller
    still holds is never overwritten. (Only an object that takes the raw pointer and keeps no
    reference, e.g. one built from ``__array_interface__``, escapes this.)
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, keep: int):
        self._shape, self._dtype, self._keep = shape, dtype, keep
        self._arrays: list[np.ndarray] = [np.empty(0)]
        # the count of an array held by this list alone, measured the way take() measures it
        self._idle = sys.getrefcount(self._arrays[0])
        self._arrays.clear()

    def take(self, rows: int) -> np.ndarray:
        if rows != self._shape[0]:  # the short last batch: not pooled
            return np.empty((rows, *self._shape[1:]), self._dtype).view()
        for i in range(len(self._arrays)):
            if sys.getrefcount(self._arrays[i]) <= self._idle:
                return self._arrays[i].view()
        fresh = np.empty(self._shape, self._dtype)
        if len(self._arrays) < self._keep:
            self._arrays.append(fresh)
        return fresh.view()


def _prefetched(picks, read, depth: int):
    """Run ``read`` over ``picks`` in a thread, at most ``depth`` batches ahead of the caller."""
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        """Queue ``item`` unless the consumer went away; False when it did."""
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for pick in picks:
                if not offer(read(pick)):
                    return
            offer(_DONE)
        except BaseException as err:  # handed to the consumer, raised there
            offer(err)

    worker = threading.Thread(target=produce, name="atlas-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = results.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
