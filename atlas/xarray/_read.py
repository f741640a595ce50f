"""Datasets of the store as xarray Datasets: ``to_xarray`` (lazy per chunk), and the pieces the
backend engine and ``to_xarray_many`` share (``layout``, ``build_dataset``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atlas.xarray._decode import redecode, resolve
from atlas.xarray._fidelity import mask_text_fill, restore_dataset_encoding, restore_variable
from atlas.xarray._lazy import lazy_array
from atlas.xarray._mapping import (
    COORDS_ATTR,
    NONE_NAME_ATTR,
    RESERVED_PREFIX,
    DecodedVariable,
    decode_attrs,
    decode_variable,
    restore_values,
)

if TYPE_CHECKING:
    import xarray as xr

    from atlas.core import Atlas, DatasetView


@dataclass
class Layout:
    """What one dataset holds, read from its metadata only (no array data)."""

    variables: list[DecodedVariable]  # in stored order
    coord_names: list[str]
    attrs: dict[str, Any]
    renames: dict[str, Any]  # stored array name -> variable name, where they differ (None)

    def key(self, var: DecodedVariable) -> Any:
        return self.renames.get(var.name, var.name)


def layout(view: DatasetView, drop: Sequence[Any] = ()) -> Layout:
    """The :class:`Layout` of one dataset; ``drop`` names variables to leave out."""
    stored = view._all_attributes()
    coords = stored.get(COORDS_ATTR)
    coord_names = json.loads(coords) if isinstance(coords, str) else []
    none_name = stored.get(NONE_NAME_ATTR)
    renames = {none_name: None} if isinstance(none_name, str) else {}
    attrs = decode_attrs({k: v for k, v in stored.items() if not k.startswith(RESERVED_PREFIX)})
    variables = [decode_variable(name, view.array_meta(name), view._all_array_attributes(name))
                 for name in view.list_arrays() if renames.get(name, name) not in drop]
    return Layout(variables, coord_names, attrs, renames)


def build_dataset(found: Layout, data_of: Callable[[DecodedVariable], Any],
                  variables: list[DecodedVariable] | None = None) -> xr.Dataset:
    """An xr.Dataset whose variable data come from ``data_of`` (``variables`` replaces the
    layout's own)."""
    import xarray as xr

    coords, data_vars = {}, {}
    coord_set = set(found.coord_names)
    for var in found.variables if variables is None else variables:
        target = coords if var.name in coord_set else data_vars
        target[found.key(var)] = finish_variable(var, data_of(var))
    return xr.Dataset(data_vars, coords, found.attrs)


def finish_variable(var: DecodedVariable, data: Any) -> xr.Variable:
    """The xarray Variable of ``var`` from its data in the restored dtype (numpy, dask or
    lazily indexed): fidelity decoding and string masking applied, lazily where it is lazy."""
    import xarray as xr

    variable = xr.Variable(var.dims, data, dict(var.attrs), dict(var.encoding))
    if var.cf is not None:
        variable = restore_variable(var.name, variable, var.cf)
    if var.text:
        variable = mask_text_fill(variable)
    return variable


def to_xarray(store: Atlas, name: str, *, decode_cf: bool | None = None,
              drop_variables: Any = None, _all_lazy: bool = False,
              **decoders: Any) -> xr.Dataset:
    """Dataset ``name``: chunked variables dask-backed (one task per on-disk chunk), full-shape
    and 0-D variables (and dimension coordinates, which xarray indexes anyway) as numpy
    (``_all_lazy``: every variable but dimension coordinates dask-backed).

    Decode keywords (``decode_cf``, ``mask_and_scale``, ``decode_times``, ...) have
    ``xr.open_dataset``'s meaning (see :mod:`atlas.xarray._decode`)."""
    keywords = resolve(decode_cf, decoders)
    view = store.open_dataset(name)
    found = layout(view, drop_names(drop_variables))

    def data_of(var: DecodedVariable):
        lazy = var.chunked or (_all_lazy and var.dims)
        if lazy and not (var.is_index and var.name in found.coord_names):
            return lazy_array(store, name, var)
        return restore_values(view.read_array(var.name), var.restore)

    ds = build_dataset(found, data_of)
    restore_dataset_encoding(ds, view)
    if keywords:
        ds = redecode(ds, keywords, {found.key(v): v.chunk_shape for v in found.variables})
    return ds


def drop_names(drop_variables: Any) -> tuple:
    """``drop_variables`` as xarray takes it: a name, or an iterable of names."""
    if drop_variables is None:
        return ()
    if isinstance(drop_variables, str):
        return (drop_variables,)
    return tuple(drop_variables)
