"""``add_xr_dataset``: one xarray Dataset in, as one new atlas dataset (never flushes).

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

from atlas.xarray._fidelity import dataset_markers, prepare_variable
from atlas.xarray._mapping import COORDS_ATTR, EncodedVariable, encode_attrs, encode_variable

if TYPE_CHECKING:
    import xarray as xr

    from atlas.core import Atlas, DatasetView


def add_xr_dataset(store: Atlas, ds: xr.Dataset, name: str,
                   chunks: Mapping[str, Sequence[int]] | None = None) -> DatasetView:
    """Write ``ds`` as the new dataset ``name`` of ``store``; ``chunks`` overrides the on-disk
    chunk shape per variable (default: the dask chunk shape, else the whole variable)."""
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        hint = " (use .to_dataset() first)" if isinstance(ds, xr.DataArray) else ""
        raise TypeError(f"expected an xarray.Dataset, got {type(ds).__name__}{hint}")
    where = f"xarray dataset for {name!r}"
    overrides = _check_chunks(ds, chunks, where)
    coord_names = list(ds.coords)
    # validate everything that can be checked up front before the dataset exists
    plans = []
    for var_name in coord_names + list(ds.data_vars):
        var_where = f"variable {var_name!r} of {where}"
        var, markers = prepare_variable(var_name, ds.variables[var_name], var_where)
        plan = encode_variable(var_name, var.dims, var.dtype, var.shape, var.attrs,
                               var.encoding, var_where)
        plan.attrs.update(markers)
        plans.append((plan, var))
    dataset_attrs = encode_attrs(ds.attrs, where)

    view = store.create_dataset(name)
    try:
        for key, value in dataset_attrs.items():
            view.set_attribute(key, value)
        view.set_attribute(COORDS_ATTR, json.dumps(coord_names))
        for key, value in dataset_markers(ds).items():
            view.set_attribute(key, value)
        for plan, var in plans:
            chunk_shape = overrides.get(plan.name) or _dask_chunk_shape(var.data) or plan.shape
            view.define_array(plan.name, plan.dtype, plan.dims, plan.shape,
                              [max(1, c) for c in chunk_shape], plan.fill_value)
            for key, value in plan.attrs.items():
                view.set_array_attribute(plan.name, key, value)
            _write_variable(view, plan, var)
    except BaseException:
        if store.dataset_exists(name):
            store.delete_dataset(name)
        raise
    return view


def _write_variable(view: DatasetView, plan: EncodedVariable, var: xr.Variable) -> None:
    data = var.data
    if not _is_dask(data):
        view.write_array(plan.name, [0] * len(plan.shape),
                         plan.values_for_store(np.asarray(var.values)))
        return
    offsets = [np.concatenate([[0], np.cumsum(c[:-1])]).astype(int) for c in data.chunks]
    for index in np.ndindex(*data.numblocks):
        start = [int(offsets[axis][i]) for axis, i in enumerate(index)]
        block = np.asarray(data.blocks[index].compute())
        view.write_array(plan.name, start, plan.values_for_store(block))
        del block


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
