"""Datasets of the store as xarray Datasets: ``to_xarray`` (lazy per chunk) and
``to_xarray_many`` (many datasets stacked along a new dimension)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.xarray._fidelity import (
    restore_dataset_encoding,
    restore_variable,
    stackable_variable,
)
from atlas.xarray._lazy import lazy_array
from atlas.xarray._mapping import (
    COORDS_ATTR,
    RESERVED_PREFIX,
    DecodedVariable,
    decode_attrs,
    decode_variable,
    restore_values,
)

if TYPE_CHECKING:
    import xarray as xr

    from atlas.core import Atlas, DatasetView


def layout(view: DatasetView, drop: Sequence[str] = ()
           ) -> tuple[list[DecodedVariable], list[str], dict[str, Any]]:
    """(variables in stored order, coordinate names, dataset attrs) of one dataset; reads no
    array data."""
    stored = view.attributes()
    coords = stored.get(COORDS_ATTR)
    coord_names = json.loads(coords) if isinstance(coords, str) else []
    attrs = decode_attrs({k: v for k, v in stored.items() if not k.startswith(RESERVED_PREFIX)})
    variables = [decode_variable(name, view.array_meta(name), view.array_attributes(name))
                 for name in view.list_arrays() if name not in drop]
    return variables, coord_names, attrs


def build_dataset(variables: list[DecodedVariable], coord_names: list[str],
                  attrs: dict[str, Any], data_of: Callable[[DecodedVariable], Any]
                  ) -> xr.Dataset:
    """An xr.Dataset whose variable data come from ``data_of``."""
    import xarray as xr

    coords, data_vars = {}, {}
    coord_set = set(coord_names)
    for var in variables:
        target = coords if var.name in coord_set else data_vars
        variable = xr.Variable(var.dims, data_of(var), dict(var.attrs), dict(var.encoding))
        if var.cf is not None:
            variable = restore_variable(var.name, variable, var.cf)
        target[var.name] = variable
    return xr.Dataset(data_vars, coords, attrs)


def to_xarray(store: Atlas, name: str) -> xr.Dataset:
    """Dataset ``name``: chunked variables dask-backed (one task per on-disk chunk), full-shape
    and 0-D variables (and dimension coordinates, which xarray indexes anyway) as numpy."""
    view = store.open_dataset(name)
    variables, coord_names, attrs = layout(view)

    def data_of(var: DecodedVariable):
        if var.chunked and not (var.is_index and var.name in coord_names):
            return lazy_array(store, name, var)
        return restore_values(view.read_array(var.name), var.restore)

    ds = build_dataset(variables, coord_names, attrs, data_of)
    restore_dataset_encoding(ds, view)
    return ds


def to_xarray_many(store: Atlas, names: Sequence[str], concat_dim: str = "dataset"
                   ) -> xr.Dataset:
    """Data variables of many datasets stacked along ``concat_dim`` (whose coordinate holds the
    names); coordinates and attributes come from the first dataset. Each variable is one
    ``read_array_across_stacked`` call into one preallocated array."""
    if isinstance(names, str):
        raise TypeError("names must be a sequence of dataset names, not a single str")
    names = list(names)
    if not names:
        raise ValueError("names is empty; nothing to stack")
    first = store.open_dataset(names[0])
    variables, coord_names, attrs = layout(first)
    taken = {d for var in variables for d in var.dims} | {var.name for var in variables}
    if concat_dim in taken:
        raise ValueError(f"concat_dim {concat_dim!r} is already a dimension or variable of "
                         f"dataset {names[0]!r}; pick another name")
    coord_set = set(coord_names)
    stacked = []
    for var in variables:
        if var.name in coord_set:
            stacked.append(var)
            continue
        var = stackable_variable(store, names, var)
        stacked.append(DecodedVariable(var.name, (concat_dim, *var.dims), (len(names), *var.shape),
                                       (1, *var.shape), var.dtype, var.restore, var.attrs,
                                       var.encoding, var.cf))
    stacked_names = {var.name for var in stacked if var.name not in coord_set}

    def data_of(var: DecodedVariable):
        if var.name in stacked_names:
            values = store.read_array_across_stacked(var.name, names)
        else:
            values = first.read_array(var.name)
        return restore_values(values, var.restore)

    ds = build_dataset(stacked, coord_names, attrs, data_of)
    return ds.assign_coords({concat_dim: np.array(names, dtype=object)})
