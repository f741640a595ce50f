"""Optional PyTorch adapter over :meth:`atlas.Atlas.batches` (torch is imported on use)."""

from __future__ import annotations

from typing import Any, Sequence


def torch_dataset(store: Any, array: str, dataset_names: Sequence[str] | None = None,
                  batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
                  start: Sequence[int] | None = None, shape: Sequence[int] | None = None,
                  drop_last: bool = False, prefetch: int = 1):
    """A ``torch.utils.data.IterableDataset`` yielding ``(names, tensor)`` batches.

    Use it with ``DataLoader(ds, batch_size=None)``: batching happens in atlas. With several
    DataLoader workers each worker reads a disjoint share of the batches (the store handle is
    pickled to the workers and reopened there).
    """
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class AtlasBatches(IterableDataset):
        def __iter__(self):
            info = get_worker_info()
            kwargs = dict(dataset_names=dataset_names, batch_size=batch_size, shuffle=shuffle,
                          seed=seed, start=start, shape=shape, drop_last=drop_last,
                          prefetch=prefetch)
            for i, (names, batch) in enumerate(store.batches(array, **kwargs)):
                if info is None or i % info.num_workers == info.id:
                    yield names, torch.from_numpy(batch)

    return AtlasBatches()
