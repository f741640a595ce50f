"""Optional PyTorch adapter over :meth:`atlas.Atlas.batches` (torch is imported on use)."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from atlas.core._batches import check_count


def torch_dataset(store: Any, array: str, dataset_names: Sequence[str] | None = None,
                  batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
                  start: Sequence[int] | None = None, shape: Sequence[int] | None = None,
                  drop_last: bool = False, prefetch: int = 1, where: Any = None):
    """A ``torch.utils.data.IterableDataset`` yielding ``(names, tensor)`` batches.

    Use it with ``DataLoader(ds, batch_size=None)``: batching happens in atlas. Each pass
    splits the datasets into batches once (shuffled from ``seed``; without a seed, from the
    DataLoader's per-epoch seed, the same in all its workers), and with ``num_workers=N``
    worker ``k`` reads only batches ``k, k + N, ...``: every dataset is read once per pass, and
    the DataLoader, which takes batches from its workers in turn, yields them in batch order.
    ``where``: only the datasets ``store.select(where)`` picks (with ``dataset_names``: only
    those of them), chosen once, here. Workers started by spawn or forkserver read the store
    as of its commit here (what was flushed when the dataset was made), so the names chosen
    are there whatever is committed later.
    """
    if dataset_names is None:
        names = [n for n in store.list_datasets() if array in store.open_dataset(n).list_arrays()]
        if not names:
            raise KeyError(f"no dataset in {store.location} has an array {array!r}")
    else:
        names = list(dataset_names)
        if not names:
            raise ValueError("dataset_names is empty; nothing to batch")
    if where is not None:
        picked = set(store.select(where))
        names = [n for n in names if n in picked]
        if not names:
            raise ValueError(f"no dataset with {array!r} matches where={where!r}")
    batch_size = check_count("batch_size", batch_size, 1)
    return _dataset_class()(store, array, names, batch_size, shuffle, seed, start, shape,
                            drop_last, prefetch)


@functools.cache  # made on first use: torch is imported then
def _dataset_class():
    """``AtlasBatches``: a class of this module, so that a DataLoader's workers started by
    spawn or forkserver (the default on macOS and Windows) unpickle it by name (a class made
    inside ``torch_dataset`` did not pickle)."""
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class AtlasBatches(IterableDataset):
        def __init__(self, store, array, names, batch_size, shuffle, seed, start, shape,
                     drop_last, prefetch):
            self.store, self.array, self.names = store, array, names
            self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
            self.start, self.shape = start, shape
            self.drop_last, self.prefetch = drop_last, prefetch
            # the commit the names were chosen at (None: read in this process only)
            self.commit = store._lazy_mark(names, array)

        def __getstate__(self) -> dict:
            # workers started by spawn or forkserver read the commit the names were chosen
            # at, as forked ones and dask graphs do (reopened, a handle reads the newest)
            state = dict(self.__dict__)
            state["store"] = self.store._at_commit(self.store._sent_mark(self.commit,
                                                                         self.array))
            return state

        def __len__(self) -> int:
            full, rest = divmod(len(self.names), self.batch_size)
            return full + (1 if rest and not self.drop_last else 0)

        def __iter__(self):
            info = get_worker_info()
            plan = batch_plan(len(self.names), self.batch_size, self.shuffle,
                              _epoch_seed(self.seed, info), self.drop_last)
            if info is not None:
                plan = plan[info.id::info.num_workers]
            mine = [self.names[i] for batch in plan for i in batch]
            if not mine:
                return
            # the worker's batches, in order: batches() cuts them again at batch_size
            for batch_names, batch in self.store.batches(
                    self.array, mine, batch_size=self.batch_size, shuffle=False,
                    start=self.start, shape=self.shape, prefetch=self.prefetch):
                yield batch_names, torch.from_numpy(batch)

    AtlasBatches.__module__ = __name__
    AtlasBatches.__qualname__ = "AtlasBatches"
    return AtlasBatches


def __getattr__(name: str):
    if name == "AtlasBatches":  # what unpickling a dataset looks up
        return _dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def batch_plan(count: int, batch_size: int, shuffle: bool, seed: int | None,
               drop_last: bool) -> list[np.ndarray]:
    """The positions of each batch of one pass over ``count`` datasets."""
    order = np.random.default_rng(seed).permutation(count) if shuffle else np.arange(count)
    plan = [order[c:c + batch_size] for c in range(0, count, batch_size)]
    if drop_last and plan and len(plan[-1]) < batch_size:
        plan.pop()
    return plan


def _epoch_seed(seed: int | None, info: Any) -> int | None:
    """``seed``, else the seed the DataLoader drew for this pass: worker ``k`` of ``N`` gets
    ``base_seed + k``, so ``info.seed - info.id`` is one number in all workers."""
    if seed is not None or info is None:
        return seed
    return info.seed - info.id
