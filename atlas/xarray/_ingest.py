"""``add_xr_dataset``: one xarray Dataset in, as one new atlas dataset (never flushes); with
``append_dim``, appended to an existing one instead (``atlas.xarray._append``).

Coordinates are written before data variables. A dask-backed variable is computed and written
one block at a time, so memory stays near one chunk per variable whatever its size. Anything that
fails deletes the half-written dataset again, so a failed ingest leaves no trace.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.errors import UnflushedChangesError
from atlas.xarray._fidelity import dataset_markers, prepare_variable
from atlas.xarray._mapping import (
    COORDS_ATTR,
    NONE_NAME_ATTR,
    EncodedVariable,
    encode_attrs,
    encode_variable,
)

if TYPE_CHECKING:
    import xarray as xr

    from atlas.core import Atlas, DatasetView


def add_xr_dataset(store: Atlas, ds: xr.Dataset, name: str,
                   chunks: Mapping[str, Sequence[int]] | None = None,
                   append_dim: str | None = None) -> DatasetView:
    """Write ``ds`` as the new dataset ``name`` of ``store``; ``chunks`` overrides the on-disk
    chunk shape per variable (default: the dask chunk shape, else the whole variable).
    ``append_dim``: when ``name`` exists, append ``ds`` to it along that dimension
    (``atlas.xarray._append``); else write it as a new dataset."""
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        hint = " (use .to_dataset() first)" if isinstance(ds, xr.DataArray) else ""
        raise TypeError(f"expected an xarray.Dataset, got {type(ds).__name__}{hint}")
    where = f"xarray dataset for {name!r}"
    _reject_multiindex(ds, where)
    if append_dim is not None:
        if append_dim not in ds.dims:
            raise ValueError(f"{where}: append_dim {append_dim!r} is not a dimension of the "
                             f"Dataset to append (its dimensions: {list(ds.dims)})")
        if store.dataset_exists(name):
            from atlas.xarray._append import append_xr_dataset

            if chunks is not None:
                raise ValueError(f"{where}: chunks= cannot change the chunk shape of the "
                                 "arrays of an existing dataset; leave it out when appending")
            return append_xr_dataset(store, ds, name, append_dim)
    overrides = _check_chunks(ds, chunks, where)
    none_name = _name_for_none(ds)

    def stored_name(var_name: Any) -> Any:
        return none_name if var_name is None else var_name

    # validate everything that can be checked up front before the dataset exists
    plans = []
    for var_name in list(ds.coords) + list(ds.data_vars):
        var_where = f"variable {var_name!r} of {where}"
        plan, var = plan_variable(stored_name(var_name), ds.variables[var_name], var_where)
        source = ds.variables[var_name]  # prepare_variable may drop its encoding
        chunk_shape = (overrides.get(var_name) or encoding_chunk_shape(source, var_where)
                       or _dask_chunk_shape(var.data) or plan.shape)
        plans.append((plan, var, [max(1, c) for c in chunk_shape]))
    dataset_attrs = encode_attrs(ds.attrs, where)

    view = store.create_dataset(name)
    try:
        for key, value in dataset_attrs.items():
            view._set_attribute(key, value)
        view._set_attribute(COORDS_ATTR, json.dumps([stored_name(c) for c in ds.coords]))
        if none_name is not None:
            view._set_attribute(NONE_NAME_ATTR, none_name)
        for key, value in dataset_markers(ds).items():
            view._set_attribute(key, value)
        for plan, var, chunk_shape in plans:
            view.define_array(plan.name, plan.dtype, plan.dims, plan.shape, chunk_shape,
                              plan.fill_value)
            for key, value in plan.attrs.items():
                view._set_array_attribute(plan.name, key, value)
            write_variable(view, plan, var)
    except BaseException:
        if store.dataset_exists(name):
            store.delete_dataset(name)
        raise
    return view


def plan_variable(name: Any, source: xr.Variable, where: str
                  ) -> tuple[EncodedVariable, xr.Variable]:
    """(array definition with its attributes and markers, variable whose values to store) of
    one variable of a Dataset being written."""
    var, markers = prepare_variable(name, source, where)
    plan = encode_variable(name, var.dims, var.dtype, var.shape, var.attrs, var.encoding, where)
    plan.attrs.update(markers)
    return plan, var


def _reject_multiindex(ds: xr.Dataset, where: str) -> None:
    import xarray as xr

    for index in ds.xindexes.get_unique():
        if isinstance(index, xr.indexes.PandasMultiIndex):
            levels = ", ".join(repr(level) for level in index.index.names)
            raise NotImplementedError(
                f"{where}: dimension {index.dim!r} has a pandas MultiIndex (levels {levels}), "
                f"which cannot be stored; reset it with ds.reset_index({index.dim!r}) first "
                "(and set_index again after reading)")


def _name_for_none(ds: xr.Dataset) -> str | None:
    """The array name for a variable named None (xarray allows one): "None", or "None_",
    "None__", ... when a variable already has that name. None when there is no such variable."""
    if None not in ds.variables:
        return None
    name = "None"
    while name in ds.variables:
        name += "_"
    return name


def encoding_chunk_shape(var: xr.Variable, where: str) -> tuple[int, ...] | None:
    """The chunk shape ``.encoding`` asks for: netCDF's ``chunksizes`` or zarr's ``chunks``
    (None when neither is given). Like netCDF4's writer, a chunk shape left from before the
    variable was subset (``original_shape`` differs, or the rank does) no longer applies."""
    encoding = var.encoding
    original = encoding.get("original_shape")
    for key in ("chunksizes", "chunks"):
        shape = encoding.get(key)
        if shape is None:
            continue
        if key == "chunksizes" and original is not None and tuple(original) != var.shape:
            continue
        try:
            shape_t = tuple(int(c) for c in shape)
        except (TypeError, ValueError):
            raise TypeError(f"{where}: encoding[{key!r}] must be a sequence of {var.ndim} "
                            f"ints, got {shape!r}") from None
        if len(shape_t) != var.ndim:
            continue  # left from before the variable was indexed: no longer applies
        if any(c < 1 for c in shape_t):
            raise ValueError(f"{where}: encoding[{key!r}] must be {var.ndim} ints >= 1 (one per "
                             f"dimension {list(var.dims)}), got {list(shape_t)}")
        # a chunk larger than the variable holds nothing more than the whole variable
        return tuple(min(c, max(1, n)) for c, n in zip(shape_t, var.shape))
    return None


def write_variable(view: DatasetView, plan: EncodedVariable, var: xr.Variable,
                   origin: Sequence[int] | None = None) -> None:
    """Write the values of ``var`` at ``origin`` (default: the start) of its array, one dask
    block at a time."""
    data = var.data
    origin = [0] * len(plan.shape) if origin is None else list(origin)
    if not _is_dask(data):
        view.write_array(plan.name, origin, plan.values_for_store(np.asarray(var.values)))
        return
    client, scheduler = _distributed_client(), None
    if client is not None:
        try:
            if _write_on_workers(client, view, plan, data, origin):
                return
        except Exception as err:  # (the client wraps what pickling a task raised)
            if not _caused_by(err, UnflushedChangesError):
                raise
            # a lazy view of this process's unflushed changes: only this process reads them
            scheduler = "threads"
    offsets = [np.concatenate([[0], np.cumsum(c[:-1])]).astype(int) for c in data.chunks]
    for index in np.ndindex(*data.numblocks):
        start = [o + int(offsets[axis][i]) for axis, (o, i) in enumerate(zip(origin, index))]
        block = np.asarray(data.blocks[index].compute(scheduler=scheduler))
        view.write_array(plan.name, start, plan.values_for_store(block))
        del block


def _caused_by(err: BaseException | None, kind: type) -> bool:
    while err is not None:
        if isinstance(err, kind):
            return True
        err = err.__cause__ or err.__context__
    return False


def _distributed_client():
    """The dask.distributed client in use, or None (then dask blocks are computed here)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def _write_on_workers(client, view: DatasetView, plan: EncodedVariable, data: Any,
                      origin: list[int]) -> bool:
    """Write a dask variable's blocks on the cluster's workers, straight to the store (no
    array data through this process); False when it cannot: a store the workers cannot
    reach (in memory), or a write that does not start on a chunk boundary."""
    import dask

    from atlas.core import _fork

    store = view.store
    _did, slot, schema_id, _pending = view._required(plan.name)
    try:
        target = _fork.block_target(store, plan.name, slot, schema_id)
    except (TypeError, ValueError, NotImplementedError):
        return False
    chunk_shape = target.schema.chunk_shape
    if any(o % c for o, c in zip(origin, chunk_shape)):
        return False
    # each block must hold whole chunks: two workers must never write parts of one chunk
    aligned = {axis: max(c, max(sizes) // c * c) for axis, (sizes, c) in
               enumerate(zip(data.chunks, chunk_shape))
               if any(size % c for size in sizes[:-1]) or len(set(sizes[:-1])) > 1}
    if aligned:
        data = data.rechunk(aligned)
    offsets = [np.concatenate([[0], np.cumsum(c[:-1])]).astype(int) for c in data.chunks]
    tasks = []
    for index in np.ndindex(*data.numblocks):
        start = tuple(o + int(offsets[axis][i]) for axis, (o, i) in enumerate(zip(origin,
                                                                                   index)))
        values = dask.delayed(plan.values_for_store)(data.blocks[index])
        tasks.append(dask.delayed(_fork.write_block)(target, values, start))
    for key, size, index in client.gather(client.compute(tasks)):
        store._pending.adopt(plan.name, key, size, index)
    return True


def _is_dask(data: Any) -> bool:
    if "dask" not in sys.modules:  # nothing can be a dask array before dask is imported
        return False
    import dask

    return dask.is_dask_collection(data) and hasattr(data, "blocks")


def _dask_chunk_shape(data: Any) -> tuple[int, ...] | None:
    if not _is_dask(data):
        return None
    return tuple(max(c) if c else 1 for c in data.chunks)


def _check_chunks(ds: xr.Dataset, chunks: Any, where: str) -> dict[str, tuple[int, ...]]:
    if chunks is None:
        return {}
    if not isinstance(chunks, Mapping):
        raise TypeError(f"{where}: chunks must be a dict of variable name -> chunk shape, "
                        f"got {type(chunks).__name__}")
    out = {}
    for var_name, shape in chunks.items():
        if var_name not in ds.variables:
            raise ValueError(f"{where}: chunks names {var_name!r}, which is not a variable; "
                             f"variables are {sorted(map(str, ds.variables))}")
        ndim = ds.variables[var_name].ndim
        try:
            shape_t = tuple(shape)
        except TypeError:
            raise TypeError(f"{where}: chunks[{var_name!r}] must be a sequence of {ndim} ints, "
                            f"got {shape!r}") from None
        if len(shape_t) != ndim or not all(
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1
                for c in shape_t):
            raise ValueError(f"{where}: chunks[{var_name!r}] must be {ndim} ints >= 1, "
                             f"got {list(shape_t)}")
        out[var_name] = tuple(int(c) for c in shape_t)
    return out
