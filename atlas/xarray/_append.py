"""Appending a Dataset to a stored one along a dimension: ``add_xr_dataset(ds, name,
append_dim="time")``, as ``xarray.Dataset.to_zarr(append_dim=...)`` appends.

Every variable with that dimension grows (its array is resized, ``DatasetView.resize_array``)
and the new values are written after the old ones. Variables without it must equal the stored
ones and are left alone, as are the attributes of the Dataset and of its variables: the stored
ones stay, as ``xr.concat`` keeps the first Dataset's.

Everything is checked before anything is written: the same variables, each a coordinate or a
data variable as before, the same dimensions with the same sizes but along ``append_dim``, the
same stored dtype, fill value and representation (cftime calendar, packing, bytes), and no
encoding key that says something else than the stored encoding. Fixed-width strings may be
wider than before: the variable widens, as in ``xr.concat``. A write that fails part-way
(a dask block that raises, a time out of range) shrinks the arrays back again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.dtypes import parse_fill, resolve_dtype
from atlas.format import values as value_format
from atlas.xarray import _encoding
from atlas.xarray._decode import FILE_ENCODING_KEYS
from atlas.xarray._ingest import plan_variable, write_variable
from atlas.xarray._mapping import CF_ATTR, DTYPE_ATTR, EncodedVariable
from atlas.xarray._read import layout, to_xarray

if TYPE_CHECKING:
    import xarray as xr

    from atlas.core import Atlas, DatasetView
    from atlas.xarray._mapping import DecodedVariable

# encoding keys that say how a file stored a variable (chunking, compression, the name of its
# character dimension, its shape there), not what its values are: they may differ
STORAGE_ENCODING_KEYS = FILE_ENCODING_KEYS | {"original_shape", "char_dim_name"}


@dataclass
class _Growth:
    """One variable that grows along the append dimension."""

    plan: EncodedVariable
    var: xr.Variable  # the values to write (as prepared for the store)
    old_shape: tuple[int, ...]
    axis: int
    markers: dict[str, Any] = field(default_factory=dict)  # array attributes to update
    previous: dict[str, Any] = field(default_factory=dict)  # their stored values

    @property
    def new_shape(self) -> tuple[int, ...]:
        shape = list(self.old_shape)
        shape[self.axis] += self.var.shape[self.axis]
        return tuple(shape)


def append_xr_dataset(store: Atlas, ds: xr.Dataset, name: str, append_dim: str) -> DatasetView:
    """Append ``ds`` to the existing dataset ``name`` along ``append_dim`` (not flushed)."""
    store._check_writable()
    where = f"xarray dataset for {name!r}"
    view = store.open_dataset(name)
    found = layout(view)
    stored = {found.key(v): v for v in found.variables}
    stored_dims = list(dict.fromkeys(d for v in found.variables for d in v.dims))
    if append_dim not in stored_dims:
        raise ValueError(f"{where}: append_dim={append_dim!r} does not match any existing "
                         f"dataset dimension {stored_dims}")
    _check_variables(ds, found, stored, where)
    growths, fixed = [], []
    for key in list(ds.coords) + list(ds.data_vars):
        var_where = f"variable {key!r} of {where}"
        have = stored[key]
        plan, var = plan_variable(have.name, ds.variables[key], var_where)
        attrs = view._all_array_attributes(have.name)
        markers = _check_like(plan, var, have, view.array_meta(have.name), attrs, append_dim,
                              var_where)
        if append_dim in var.dims:
            growths.append(_Growth(plan, var, have.shape, var.dims.index(append_dim), markers,
                                   {k: attrs[k] for k in markers}))
        else:
            fixed.append(key)
    if fixed:
        old = to_xarray(store, name)
        for key in fixed:
            if not old.variables[key].equals(ds.variables[key]):
                raise ValueError(f"variable {key!r} of {where}: it has no dimension "
                                 f"{append_dim!r}, so it must equal the stored one, and its "
                                 "values differ")
    _grow(view, growths)
    return view


def _check_variables(ds: xr.Dataset, found, stored: dict, where: str) -> None:
    """The same variables as the stored dataset, each a coordinate or not as before."""
    new = [k for k in ds.variables if k not in stored]
    if new:
        raise ValueError(f"{where}: variables {new} are not in the stored dataset; an append "
                         f"grows the variables it has ({list(stored)}), it adds none")
    missing = [k for k in stored if k not in ds.variables]
    if missing:
        raise ValueError(f"{where}: the Dataset to append lacks the stored variables "
                         f"{missing}; an append gives every variable")
    coords = {found.key(v) for v in found.variables if v.name in set(found.coord_names)}
    for key in ds.variables:
        if (key in coords) != (key in ds.coords):
            roles = ("a coordinate", "a data variable")
            was, now = (roles if key in coords else roles[::-1])
            raise ValueError(f"{where}: {key!r} is {was} in the store and {now} in the "
                             "Dataset to append")


def _check_like(plan: EncodedVariable, var: xr.Variable, have: DecodedVariable, meta: dict,
                attrs: dict, append_dim: str, where: str) -> dict[str, Any]:
    """Raise ValueError where the variable to append does not match the stored one; return
    the array attributes to update (a fixed-width string dtype that widens)."""
    if tuple(var.dims) != have.dims:
        raise ValueError(f"{where}: the store has it with dimensions {list(have.dims)}, the "
                         f"Dataset to append with {list(var.dims)}")
    for dim, old_n, new_n in zip(var.dims, have.shape, var.shape):
        if dim != append_dim and old_n != new_n:
            raise ValueError(f"{where}: dimension {dim!r} has size {old_n} in the store and "
                             f"{new_n} in the Dataset to append; only {append_dim!r} may grow")
    old_doc = _encoding.marker(attrs[CF_ATTR]) if CF_ATTR in attrs else {}
    new_doc = plan.attrs.get(CF_ATTR, {})
    old_decode, new_decode = old_doc.get("decode"), new_doc.get("decode")
    if plan.dtype != meta["dtype"] or _plan_key(old_decode) != _plan_key(new_decode):
        raise ValueError(f"{where}: the store holds it as {_describe(have.dtype, old_decode)}, "
                         f"the Dataset to append gives {_describe(plan.source_dtype, new_decode)}")
    updates: dict[str, Any] = {}
    old_restore, new_restore = attrs.get(DTYPE_ATTR), plan.attrs.get(DTYPE_ATTR)
    if old_restore != new_restore:
        wider = _wider(old_restore, new_restore)
        if wider is None:
            raise ValueError(f"{where}: the store holds it as {have.dtype}, the Dataset to "
                             f"append gives {plan.source_dtype}")
        if wider != old_restore:
            updates[DTYPE_ATTR] = wider
    if old_decode and old_decode.get("dtype") != new_decode.get("dtype"):  # bytes of a width
        wider = _wider(old_decode.get("dtype"), new_decode.get("dtype"))
        if wider is None:
            raise ValueError(f"{where}: the store holds it as {have.dtype}, the Dataset to "
                             f"append gives {plan.source_dtype}")
        if wider != old_decode["dtype"]:
            updates[CF_ATTR] = dict(old_doc, decode=dict(old_decode, dtype=wider))
    old_encoding = _encoding.loads(old_doc.get("encoding", {}))
    new_encoding = new_doc.get("encoding", {})
    for key in old_encoding.keys() & new_encoding.keys() - STORAGE_ENCODING_KEYS:
        if _canonical(old_encoding[key]) != _canonical(new_encoding[key]):
            raise ValueError(f"{where}: its encoding[{key!r}] is {old_encoding[key]!r} in the "
                             f"store and {new_encoding[key]!r} in the Dataset to append")
    _check_fill(plan, meta, where)
    return updates


def _check_fill(plan: EncodedVariable, meta: dict, where: str) -> None:
    """The same typed fill; a variable to append that declares none takes the stored one (so
    missing strings are stored as it, as they were)."""
    dtype = resolve_dtype(meta["dtype"])
    old = parse_fill(dtype, meta["fill_value"], where)
    new = parse_fill(dtype, plan.fill_value, where)
    if new is None:
        plan.fill_value = meta["fill_value"]
        return
    same = old == new or (isinstance(old, float) and isinstance(new, float)
                          and math.isnan(old) and math.isnan(new))
    if not same:
        raise ValueError(f"{where}: its _FillValue is {meta['fill_value']!r} in the store and "
                         f"{plan.fill_value!r} in the Dataset to append")


def _grow(view: DatasetView, growths: list[_Growth]) -> None:
    """Resize each growing array and write its new values after the old ones; if anything
    raises, shrink them back (nothing of the append remains) and restore their markers."""
    done: list[_Growth] = []
    try:
        for growth in growths:
            name = growth.plan.name
            done.append(growth)
            for key, value in growth.markers.items():
                view._set_array_attribute(name, key, value)
            view.resize_array(name, growth.new_shape)
            origin = [0] * len(growth.old_shape)
            origin[growth.axis] = growth.old_shape[growth.axis]
            write_variable(view, growth.plan, growth.var, origin)
    except BaseException:
        for growth in reversed(done):
            view.resize_array(growth.plan.name, growth.old_shape)
            for key, value in growth.previous.items():
                view._set_array_attribute(growth.plan.name, key, value)
        raise


def _plan_key(decode: dict | None) -> str:
    """What must be equal of two stored representations (the attributes a cftime variable was
    given, and the width of bytes, may differ)."""
    if decode is None:
        return "null"
    return _canonical({k: v for k, v in decode.items() if k not in ("added", "dtype")})


def _canonical(value: Any) -> str:
    """Equal texts for equal values, as the store keeps them (types, NaN, key order aside)."""
    return json.dumps(value_format.to_json_value(value), sort_keys=True)


def _wider(a: str | None, b: str | None) -> str | None:
    """The wider of two fixed-width string dtypes of one kind; None when they are not."""
    if a is None or b is None:
        return None
    try:
        da, db = np.dtype(a), np.dtype(b)
    except TypeError:
        return None
    if da.kind != db.kind or da.kind not in "SU":
        return None
    return (da if da.itemsize >= db.itemsize else db).str


def _describe(dtype: Any, decode: dict | None) -> str:
    if decode is None:
        return str(dtype)
    kind = decode["kind"]
    if kind == "packed":
        return f"{dtype} packed as integers (by scale_factor/add_offset in its encoding)"
    if kind == "cftime":
        return f"cftime datetimes of calendar {decode['calendar']!r}"
    return f"{dtype} kept as bytes"
