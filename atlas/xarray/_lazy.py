"""Lazy reads as dask graphs: one task per on-disk chunk, each a small picklable callable.

A task holds the ``Atlas`` handle, the dataset (name and id) and array names and its window.
In the process that built the graph it uses that handle (so it also sees unflushed writes);
pickled, it travels as the store's description and reopens lazily in the worker, where handles
are shared per process so that a worker opens each store once, not once per task.
"""

from __future__ import annotations

import math
import pickle
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from atlas.errors import ArrayNotFoundError, DatasetNotFoundError
from atlas.xarray._mapping import DecodedVariable, restore_values

if TYPE_CHECKING:
    from atlas.core import Atlas

SHARED_HANDLES = 16  # reopened stores kept per worker process (least recently used go)
# chunks of one lazy array: a graph costs ~700 bytes and ~4 us per task to build (10^7 made a
# MemoryError after minutes; 10^6 takes seconds and hundreds of MB)
MAX_TASKS = 1_000_000
_shared: OrderedDict[bytes, Atlas] = OrderedDict()
_shared_lock = threading.Lock()


def _shared_handle(store: Atlas, commit: tuple[int, str]) -> Atlas:
    """One reopened handle per store, commit and process, at ``commit`` (generation and id,
    ``Atlas._commit_mark``): the one the graph was built at, so that all its tasks read one
    commit wherever they run (a process that opened the store later read a newer commit: one
    compute mixed two; a store made again at its path read the old one's handle)."""
    key = (pickle.dumps(store), commit)
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = store._at_commit(commit)
        _shared.move_to_end(key)
        while len(_shared) > SHARED_HANDLES:
            _shared.popitem(last=False)
        return found


def dataset_ids(store: Atlas, names: list[str]) -> np.ndarray:
    """The ids :func:`check_datasets` checks: of committed datasets; -1 for one created since
    the handle's commit, whose id a rebase of the next flush may move (it is not checked)."""
    dids = store._dids(names)
    return np.where(dids < store._catalog.root.next_did, dids, -1)  # Catalog.is_committed


def dataset_id(store: Atlas, name: str) -> int:
    """:func:`dataset_ids` of one dataset, without a dict of every name (a store of 10^6)."""
    did = store._did(name)
    return did if store._catalog.is_committed(did) else -1


def check_datasets(store: Atlas, names: list[str], dids: np.ndarray) -> None:
    """DatasetNotFoundError unless ``names`` still name the datasets ``dids`` (of
    :func:`dataset_ids`) they named when a lazy read was made: a deleted dataset is gone even
    where its name is another dataset's now (a lazy read would give that one's values: a
    Dataset written back under its own name after a delete read itself half-written, and
    stored zeros)."""
    now = store._dids(names)  # DatasetNotFoundError for a name no dataset has
    changed = np.flatnonzero((now != dids) & (dids >= 0))
    if len(changed):
        raise _deleted(store, names[changed[0]])


def read_window(store: Atlas, dataset: str, did: int, array: str, start, shape,
                stored: np.dtype | None) -> np.ndarray:
    """``read_array`` of the dataset ``did`` (of :func:`dataset_id`), named ``dataset``, as
    :func:`check_datasets` checks it, and as :func:`present` checks the values."""
    view = store.open_dataset(dataset)
    if did >= 0 and view._did() != did:  # (the view's lookup, cached: no dict of every name)
        raise _deleted(store, dataset)
    return present(view.read_array(array, start, shape), store, dataset, array, stored)


def present(values: np.ndarray | None, store: Atlas, dataset: str, array: str,
            stored: np.dtype | None) -> np.ndarray:
    """``values`` of a lazy read, or ArrayNotFoundError when the array went (``read_array``
    gives None: a task then returned nothing where a window was due) or is of another dtype
    than ``stored``, the one the lazy array was made for (deleted and defined again)."""
    if values is None:
        raise ArrayNotFoundError(f"array {array!r} of dataset {dataset!r} of {store.location} "
                                 "was deleted since this lazy array was made (or, read in "
                                 "another process, was not flushed when it was)")
    if stored is not None and values.dtype != stored:
        raise ArrayNotFoundError(f"array {array!r} of dataset {dataset!r} of {store.location} "
                                 f"was deleted and defined again as {values.dtype} since this "
                                 f"lazy array of {stored} was made")
    return values


def _deleted(store: Atlas, name: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"dataset {name!r} of {store.location} was deleted since this "
                                "lazy array was made (the name is another dataset's now)")


class WindowRead:
    """Reads the window ``start``/``shape`` of one array: the task of one dask chunk."""

    __slots__ = ("array", "commit", "dataset", "did", "restore", "shape", "start", "store",
                 "stored")

    def __init__(self, store: Atlas, commit: tuple[int, str], dataset: str, did: int, array: str,
                 start: tuple[int, ...], shape: tuple[int, ...], restore: str | None,
                 stored: np.dtype | None):
        self.store = store
        self.commit = commit
        self.dataset = dataset
        self.did = did
        self.array = array
        self.start = start
        self.shape = shape
        self.restore = restore
        self.stored = stored

    def __call__(self) -> np.ndarray:
        values = read_window(self.store, self.dataset, self.did, self.array, self.start,
                             self.shape, self.stored)
        return restore_values(values, self.restore)

    def __reduce__(self):
        commit = self.store._sent_mark(self.commit, self.array)
        return (_revive, (self.store, commit, self.dataset, self.did, self.array,
                          self.start, self.shape, self.restore, self.stored))

    def __repr__(self) -> str:
        return (f"WindowRead({self.dataset!r}, {self.array!r}, start={list(self.start)}, "
                f"shape={list(self.shape)})")


def _revive(store, commit, dataset, did, array, start, shape, restore, stored) -> WindowRead:
    return WindowRead(_shared_handle(store, commit), commit, dataset, did, array, start,
                      shape, restore, stored)


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
    tasks = math.prod(len(c) for c in chunks)
    if tasks > MAX_TASKS:  # the graph alone would take hundreds of bytes per task
        raise ValueError(
            f"array {variable.name!r} of dataset {dataset!r} has {tasks} chunks, and a lazy "
            f"read makes one dask task per chunk (at most {MAX_TASKS}); read windows of it "
            "with DatasetView.read_array(name, start, shape) instead")
    name = f"atlas-{variable.name}-{uuid.uuid4().hex}"
    commit = store._lazy_mark([dataset], variable.name)
    did = dataset_id(store, dataset)
    graph = {}
    offsets = [np.concatenate([[0], np.cumsum(c[:-1])]).astype(int) for c in chunks]
    for index in np.ndindex(*(len(c) for c in chunks)):
        start = tuple(int(offsets[a][i]) for a, i in enumerate(index))
        window = tuple(chunks[a][i] for a, i in enumerate(index))
        graph[(name, *index)] = (WindowRead(store, commit, dataset, did, variable.name,
                                            start, window, variable.restore,
                                            variable.stored),)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
    return da.Array(hlg, name, chunks, dtype=variable.dtype)
