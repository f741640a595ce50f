"""Small netCDF files written the way real ones are (netCDF4 in NETCDF4 and NETCDF3_CLASSIC
format, scipy's netcdf_file), and the comparison that says a store gave a file back unchanged.

The reference is always ``xr.open_dataset`` of the file: whatever xarray makes of it (cftime
objects, packed floats, fixed-width bytes) must come back from the store identical, with the
same dtypes, the same attribute types and the encoding facts that say how it was on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import atlas

FLAVOURS = ("netcdf4", "netcdf3", "scipy")
# how each flavour's file is opened by the reference (netCDF4 files through the default engine)
OPEN = {"netcdf4": {}, "netcdf3": {}, "scipy": {"engine": "scipy"}}

# encoding keys that say how a variable was on disk; they must survive the store
ESSENTIAL_ENCODING = ("dtype", "units", "calendar", "scale_factor", "add_offset", "_FillValue",
                      "missing_value", "char_dim_name", "_Encoding", "_Unsigned", "zlib",
                      "complevel", "chunksizes", "contiguous")


@dataclass
class Var:
    """One variable of a file: raw (on-disk) values and attributes."""

    name: str
    dtype: str
    dims: tuple[str, ...]
    data: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    fill: Any = None  # the _FillValue, given at creation as netCDF requires


def write_nc(path: Path, flavour: str, dims: dict[str, int | None], variables: list[Var],
             attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a file of ``flavour``; returns the ``xr.open_dataset`` keyword arguments for it."""
    attrs = attrs or {}
    if flavour == "scipy":
        _write_scipy(path, dims, variables, attrs)
    else:
        _write_netcdf4(path, "NETCDF4" if flavour == "netcdf4" else "NETCDF3_CLASSIC", dims,
                       variables, attrs)
    return dict(OPEN[flavour])


def _write_netcdf4(path, fmt, dims, variables, attrs) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        for name, size in dims.items():
            nc.createDimension(name, size)
        for var in variables:
            dtype = str if var.dtype == "str" else var.dtype
            v = nc.createVariable(var.name, dtype, var.dims, fill_value=var.fill)
            if dtype is not str:
                v.set_auto_maskandscale(False)
                v.set_auto_chartostring(False)
            for key, value in var.attrs.items():
                if isinstance(value, list):
                    v.setncattr_string(key, value)
                else:
                    v.setncattr(key, value)
            data = np.asarray(var.data, dtype=object if dtype is str else None)
            if data.ndim == 0:
                v.assignValue(data[()]) if dtype is not str else v.__setitem__((), data[()])
            elif data.size:
                v[...] = data
        for key, value in attrs.items():
            if isinstance(value, list):
                nc.setncattr_string(key, value)
            else:
                nc.setncattr(key, value)


def _write_scipy(path, dims, variables, attrs) -> None:
    from scipy.io import netcdf_file

    with netcdf_file(path, "w", version=1) as nc:
        for name, size in dims.items():
            nc.createDimension(name, size)
        for var in variables:
            dtype = "c" if np.dtype(var.dtype) == np.dtype("S1") else var.dtype
            v = nc.createVariable(var.name, dtype, var.dims)
            if var.fill is not None:
                v._FillValue = np.array(var.fill, dtype=var.dtype)
            for key, value in var.attrs.items():
                setattr(v, key, value)
            data = np.asarray(var.data, dtype=var.dtype)
            if data.ndim == 0:
                v[...] = data  # (scipy's assignValue fails on 0-D variables)
            elif data.size:
                v[:] = data  # a slice: scipy grows record variables only through one
        for key, value in attrs.items():
            setattr(nc, key, value)


def chars(strings: list[bytes], width: int) -> np.ndarray:
    """Fixed-width byte strings as the (n, width) char array netCDF stores."""
    return np.array(strings, dtype=f"S{width}").view("S1").reshape(len(strings), width)


# -- the comparison --------------------------------------------------------------------------


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type (numpy dtype included); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.kind == "f":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, np.dtype):
        return a == b and a.metadata == b.metadata
    if isinstance(a, (float, np.floating)):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def _kind(value: Any) -> tuple:
    """An object element's type, with the calendar facts of a cftime datetime."""
    return (type(value), getattr(value, "calendar", None), getattr(value, "has_year_zero", None))


def assert_same_attrs(actual: dict, expected: dict, where: str) -> None:
    assert list(actual) == list(expected), f"{where}: attribute keys {list(actual)} != " \
                                           f"{list(expected)}"
    for key, value in expected.items():
        assert same_value(actual[key], value), (
            f"{where}: attribute {key!r} is {actual[key]!r} ({type(actual[key]).__name__}), "
            f"expected {value!r} ({type(value).__name__})")


def assert_faithful(actual: xr.Dataset, expected: xr.Dataset) -> None:
    """``assert_identical`` plus what it does not look at: dtypes, the types of attribute
    values and of object elements, and the encoding facts of every variable."""
    xr.testing.assert_identical(actual, expected)
    assert set(actual.coords) == set(expected.coords)
    for name, var in expected.variables.items():
        got = actual.variables[name]
        assert got.dtype == var.dtype, f"{name!r}: dtype {got.dtype} != {var.dtype}"
        if var.dtype == object:
            assert [_kind(v) for v in got.values.flat] == [_kind(v) for v in var.values.flat], \
                f"{name!r}: element types differ"
        assert_same_attrs(dict(got.attrs), dict(var.attrs), f"variable {name!r}")
        for key in ESSENTIAL_ENCODING:
            if key in var.encoding:
                assert key in got.encoding, f"{name!r}: encoding lost {key!r}"
                assert same_value(got.encoding[key], var.encoding[key]), (
                    f"{name!r}: encoding {key!r} is {got.encoding[key]!r}, expected "
                    f"{var.encoding[key]!r}")
    assert_same_attrs(dict(actual.attrs), dict(expected.attrs), "dataset")
    if "unlimited_dims" in expected.encoding:  # the record dimension a writer uses again
        assert actual.encoding.get("unlimited_dims") == expected.encoding["unlimited_dims"]


def roundtrip(path: Path, store_path: Path, name: str = "d", chunks: dict | None = None,
              **open_kw: Any) -> atlas.Atlas:
    """Ingest ``xr.open_dataset(path, **open_kw)``; check it before the flush and after the
    store was reopened; returns the reopened store."""
    with xr.open_dataset(path, **open_kw) as expected:
        store = atlas.Atlas.create(store_path)
        store.add_xr_dataset(expected, name, chunks=chunks)
        assert_faithful(store.to_xarray(name), expected)
        store.flush()
    reopened = atlas.Atlas.open(store_path)
    with xr.open_dataset(path, **open_kw) as fresh:
        assert_faithful(reopened.to_xarray(name), fresh)
    return reopened
