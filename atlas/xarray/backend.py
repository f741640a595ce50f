"""The ``engine="atlas"`` xarray backend: ``xr.open_dataset(path, engine="atlas", group=name)``
and ``xr.open_datatree(path, engine="atlas")`` (every dataset a child group).

Variables are lazy through :class:`AtlasBackendArray` (basic indexing: each access reads the
bounding window only); ``preferred_chunks`` in the encoding is the on-disk chunk shape, so
``chunks={}`` gives dask chunks that match the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from atlas.format.keys import ROOT_KEY as MANIFEST_KEY
from atlas.xarray._decode import DECODERS, redecode, resolve
from atlas.xarray._fidelity import restore_dataset_encoding
from atlas.xarray._lazy import _shared_handle, dataset_id, read_window
from atlas.xarray._mapping import DecodedVariable, restore_values
from atlas.xarray._read import build_dataset, drop_names, layout


class AtlasBackendArray(BackendArray):
    """One stored array as an xarray backend array (picklable: holds the Atlas handle)."""

    def __init__(self, store, dataset: str, variable: DecodedVariable):
        self.store = store
        # the commit the Dataset was opened at (None: read in this process only)
        self.commit = store._lazy_mark([dataset], variable.name)
        self.dataset = dataset
        # the dataset itself, whatever the name names later
        self.did = dataset_id(store, dataset)
        self.name = variable.name
        self.shape = variable.shape
        self.dtype = variable.dtype
        self.restore = variable.restore
        self.stored = variable.stored

    def __reduce__(self):
        # in another process (a dask worker): the store at that commit, one handle per process
        state = {k: v for k, v in vars(self).items() if k != "store"}
        state["commit"] = self.store._sent_mark(self.commit, self.name)
        return (_revive, (self.store, state))

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC,
                                                  self._getitem)

    def _getitem(self, key: tuple) -> np.ndarray:
        start, window, pick = [], [], []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice):
                steps = range(*k.indices(n))
                if len(steps) == 0:
                    start.append(0)
                    window.append(0)
                    pick.append(slice(None))
                    continue
                lo, hi = min(steps[0], steps[-1]), max(steps[0], steps[-1])
                start.append(lo)
                window.append(hi - lo + 1)
                first = steps[0] - lo
                stop = steps[-1] - lo + (1 if steps.step > 0 else -1)
                pick.append(slice(first, stop if stop >= 0 else None, steps.step))
            else:
                i = int(k) + n if int(k) < 0 else int(k)
                start.append(i)
                window.append(1)
                pick.append(0)
        values = read_window(self.store, self.dataset, self.did, self.name, start, window,
                             self.stored)
        # the Ellipsis keeps a 0-D result an array: a numpy scalar would lose the dtype of
        # fixed-width and object strings when xarray turns it back into an array
        return restore_values(values, self.restore)[(*pick, Ellipsis)]


def _revive(store, state: dict) -> AtlasBackendArray:
    array = AtlasBackendArray.__new__(AtlasBackendArray)
    vars(array).update(state, store=_shared_handle(store, state["commit"]))
    return array


class _DecodedArray(BackendArray):
    """A variable that decode keywords decoded over dask arrays, as a backend array: computed
    when indexed, so that ``.load()`` gives numpy as for every other variable (it kept the dask
    array, which then read the store, gone or changed, whenever used)."""

    def __init__(self, variable):
        self.variable, self.shape, self.dtype = variable, variable.shape, variable.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC,
                                                  self._getitem)

    def _getitem(self, key: tuple) -> np.ndarray:
        return np.asarray(self.variable[key].values)


def _over_dask(data: Any) -> bool:
    """Whether xarray's (lazily indexed, lazily decoded) wrappers hold a dask array."""
    from atlas.xarray._ingest import _is_dask

    while not _is_dask(data):
        if not isinstance(data, indexing.ExplicitlyIndexed) or not hasattr(data, "array"):
            return False
        data = data.array
    return True


class AtlasBackendEntrypoint(BackendEntrypoint):
    """Opens the datasets of an atlas store (a directory holding ``manifest.atlas``, an object
    store URL, or an ``atlas.Atlas`` handle)."""

    description = "Open datasets of an atlas store (many similarly-shaped datasets) lazily"
    url = "https://github.com/maris-development/atlas"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "group", "storage_options",
                               "version", *DECODERS)
    supports_groups = True

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            from atlas.core import Atlas

            return isinstance(filename_or_obj, Atlas)
        path = os.fspath(filename_or_obj)
        return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST_KEY))

    def open_dataset(self, filename_or_obj: Any, *,
                     drop_variables: str | Iterable[str] | None = None,
                     group: str | None = None,
                     storage_options: Mapping[str, Any] | None = None,
                     version: Any = None,
                     **decoders: Any):
        """One dataset of the store; decode keywords as ``xr.open_dataset`` documents them
        (``decode_cf=False`` arrives here as every decoder set to False). ``version``: an
        earlier version of the store (``Atlas.open(..., version=)``)."""
        keywords = resolve(None, decoders)
        store = _open_store(filename_or_obj, storage_options, version)
        names = store.list_datasets()
        if group is None:
            if len(names) != 1:
                raise ValueError(f"the atlas store at {store.location} holds {len(names)} "
                                 f"datasets; pass group= one of {names[:10]}"
                                 f"{' ...' if len(names) > 10 else ''}")
            group = names[0]
        return _open_group(store, group.strip("/"), drop_variables, keywords)

    def open_groups_as_dict(self, filename_or_obj: Any, *,
                            drop_variables: str | Iterable[str] | None = None,
                            group: str | None = None,
                            storage_options: Mapping[str, Any] | None = None,
                            version: Any = None,
                            **decoders: Any) -> dict:
        import xarray as xr

        keywords = resolve(None, decoders)
        store = _open_store(filename_or_obj, storage_options, version)
        if group is not None and group.strip("/"):
            name = group.strip("/")
            return {"/": _open_group(store, name, drop_variables, keywords)}
        groups = {"/": xr.Dataset()}
        for name in store.list_datasets():
            groups[f"/{name}"] = _open_group(store, name, drop_variables, keywords)
        return groups

    def open_datatree(self, filename_or_obj: Any, *,
                      drop_variables: str | Iterable[str] | None = None,
                      group: str | None = None,
                      storage_options: Mapping[str, Any] | None = None,
                      version: Any = None,
                      **decoders: Any):
        import xarray as xr

        return xr.DataTree.from_dict(self.open_groups_as_dict(
            filename_or_obj, drop_variables=drop_variables, group=group,
            storage_options=storage_options, version=version, **decoders))


def _open_store(filename_or_obj: Any, storage_options: Mapping[str, Any] | None,
                version: Any = None):
    """An open handle: the one given, or the store at a path or URL (``storage_options`` go to
    ``Atlas.open``, e.g. obstore's ``region`` or ``endpoint``), opened read-only, at
    ``version`` when one is given."""
    from atlas.core import Atlas

    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise TypeError(f"storage_options must be a dict of store options, got "
                        f"{type(storage_options).__name__}")
    if isinstance(filename_or_obj, Atlas):
        if storage_options:
            raise ValueError("storage_options apply to a path or URL; this is an open "
                             "atlas.Atlas handle, which has its options already")
        if version is not None:
            raise ValueError("version= applies to a path or URL; open the handle with "
                             "atlas.Atlas.open(..., version=) instead")
        return filename_or_obj
    return Atlas.open(filename_or_obj, read_only=True, version=version,
                      **(storage_options or {}))


def _open_group(store, name: str, drop_variables, keywords: dict):
    view = store.open_dataset(name)
    found = layout(view, drop_names(drop_variables))

    def data_of(var: DecodedVariable):
        return indexing.LazilyIndexedArray(AtlasBackendArray(store, name, var))

    ds = build_dataset(found, data_of)
    restore_dataset_encoding(ds, view)
    chunk_shapes = {found.key(var): var.chunk_shape for var in found.variables}
    if keywords:
        ds = redecode(ds, keywords, chunk_shapes)
        for variable in ds.variables.values():
            if _over_dask(variable._data):
                variable._data = indexing.LazilyIndexedArray(
                    _DecodedArray(variable.copy(deep=False)))
    for key, chunk_shape in chunk_shapes.items():
        variable = ds.variables.get(key)
        if variable is not None and variable.ndim == len(chunk_shape):  # not a char array
            encoding = variable.encoding
            encoding["preferred_chunks"] = dict(zip(variable.dims, chunk_shape))
            encoding["chunks"] = chunk_shape
    return ds
