"""Lazy reads as dask graphs: one task per on-disk chunk, each a small picklable callable.

A task holds the ``Atlas`` handle, the dataset and array names and its window. In the process
that built the graph it uses that handle (so it also sees unflushed writes); pickled, it travels
as the store's description and reopens lazily in the worker, where handles are shared per
process so that a worker opens each store once, not once per task.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from atlas.xarray._mapping import DecodedVariable, restore_values

if TYPE_CHECKING:
    from atlas.core import Atlas

SHARED_HANDLES = 16  # reopened stores kept per worker process (least recently used go)
_shared: OrderedDict[bytes, Atlas] = OrderedDict()
_shared_lock = threading.Lock()


def _shared_handle(store: Atlas, generation: int) -> Atlas:
    """One reopened handle per store, commit and process, at commit ``generation``: the one
    the graph was built at, so that all its tasks read one commit wherever they run (a
    process that opened the store later read a newer commit: one compute mixed two)."""
    key = (pickle.dumps(store), generation)
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = store._at_commit(generation)
        _shared.move_to_end(key)
        while len(_shared) > SHARED_HANDLES:
            _shared.popitem(last=False)
        return found


class WindowRead:
    """Reads the window ``start``/``shape`` of one array: the task of one dask chunk."""

    __slots__ = ("array", "dataset", "generation", "restore", "shape", "start", "store")

    def __init__(self, store: Atlas, generation: int, dataset: str, array: str,
                 start: tuple[int, ...], shape: tuple[int, ...], restore: str | None):
        self.store = store
        self.generation = generation
        self.dataset = dataset
        self.array = array
        self.start = start
        self.shape = shape
        self.restore = restore

    def __call__(self) -> np.ndarray:
        values = self.store.open_dataset(self.dataset).read_array(self.array, self.start,
                                                                  self.shape)
        return restore_values(values, self.restore)

    def __reduce__(self):
        return (_revive, (self.store, self.generation, self.dataset, self.array, self.start,
                          self.shape, self.restore))

    def __repr__(self) -> str:
        return (f"WindowRead({self.dataset!r}, {self.array!r}, start={list(self.start)}, "
                f"shape={list(self.shape)})")


def _revive(store, generation, dataset, array, start, shape, restore) -> WindowRead:
    return WindowRead(_shared_handle(store, generation), generation, dataset, array, start,
                      shape, restore)


def chunk_grid(shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The dask ``chunks`` tuple that mirrors an on-disk chunk grid."""
    return tuple(
        tuple(min(c, n - i) for i in range(0, n, c)) if n else (0,)
        for n, c in zip(shape, chunk_shape)
    )


def lazy_array(store: Atlas, dataset: str, variable: DecodedVariable):
    """A dask array reading ``variable`` of ``dataset`` chunk by chunk; reads nothing now."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    chunks = chunk_grid(variable.shape, variable.chunk_shape)
    name = f"atlas-{variable.name}-{uuid.uuid4().hex}"
    generation = store.generation
    graph = {}
    offsets = [np.concatenate([[0], np.cumsum(c[:-1])]).astype(int) for c in chunks]
    for index in np.ndindex(*(len(c) for c in chunks)):
        start = tuple(int(offsets[a][i]) for a, i in enumerate(index))
        window = tuple(chunks[a][i] for a, i in enumerate(index))
        graph[(name, *index)] = (WindowRead(store, generation, dataset, variable.name, start,
                                            window, variable.restore),)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
    return da.Array(hlg, name, chunks, dtype=variable.dtype)
