"""ML batches: shuffled stacked reads of one array, the next batch read in the background."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas

_DONE = object()


def batches(store: "Atlas", array: str, dataset_names: Sequence[str] | None = None,
            batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
            start: Sequence[int] | None = None, shape: Sequence[int] | None = None,
            drop_last: bool = False, prefetch: int = 1) -> Iterator[tuple[list[str], np.ndarray]]:
    """Check everything up front, then return the iterator of (names, batch) pairs."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
        raise ValueError(f"prefetch must be an int >= 0, got {prefetch!r}")
    if dataset_names is None:
        names = [n for n in store.list_datasets()
                 if array in store._manifest.datasets[n]["arrays"]]
        if not names:
            raise KeyError(f"no dataset in {store.location} has an array {array!r}")
    else:
        names = list(dataset_names)
        if not names:
            raise ValueError("dataset_names is empty; nothing to batch")
    slots, schema_ids = store._rows(array, names)
    dtype, start_t, window = store._common_window(array, names, schema_ids, start, shape)
    order = np.random.default_rng(seed).permutation(len(names)) if shuffle \
        else np.arange(len(names))
    cuts = list(range(0, len(names), batch_size))
    if drop_last and len(names) % batch_size:
        cuts = cuts[:-1]
    picks = [order[c : c + batch_size] for c in cuts]

    def read(pick: np.ndarray) -> tuple[list[str], np.ndarray]:
        out = np.empty((len(pick), *window), dtype=dtype)
        store._read(array, slots[pick], schema_ids[pick], start_t, window, out)
        return [names[i] for i in pick], out

    if prefetch == 0:
        return (read(p) for p in picks)
    return _prefetched(picks, read, prefetch)


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
