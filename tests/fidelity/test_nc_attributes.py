"""Attributes of every kind netCDF produces come back equal and of the same type: numpy
scalars of every netCDF type, arrays (flag_values, valid_range), string lists, NaN and
infinity, empty strings, and long histories full of unusual characters."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fidelity_helpers import FLAVOURS, Var, assert_same_attrs, roundtrip, write_nc

import atlas

NC3_TYPES = ("i1", "i2", "i4", "f4", "f8")
NC4_TYPES = NC3_TYPES + ("u1", "u2", "u4", "i8", "u8")
HISTORY = "\n".join(
    f"Tue Mar {i % 28 + 1:02d} 12:00:{i % 60:02d} 2024: ncks -O -d time,{i},{i + 1} "
    f"in_{i}.nc out.nc; ncatted -a 'title,global,o,c,\"Ärger ü ß 中文 🌊 ½\t{i}\\'"
    for i in range(1500))  # ~150 kB
ODD = "json:{\"not\": \"ours\"} \\ ' \" \x01\x7f \u200f\u202e right-to-left \ufeff nbsp\u00a0"


def attributes_file(path, flavour):
    types = NC4_TYPES if flavour == "netcdf4" else NC3_TYPES
    attrs = {}
    for t in types:
        info = np.iinfo(t) if t[0] in "iu" else np.finfo(t)
        attrs[f"scalar_{t}"] = np.array(info.max, dtype=t)
        attrs[f"array_{t}"] = np.array([info.min, 0, info.max], dtype=t)
    attrs.update({
        "flag_values": np.array([0, 1, 2, 4], dtype="i1"),
        "flag_meanings": "good suspect bad missing",
        "valid_range": np.array([-1.5, 40.0], dtype="f4"),
        "actual_range": np.array([np.nan, np.inf], dtype="f8"),
        "missing": np.float32(np.nan),
        "minus_infinity": np.float64(-np.inf),
        "single_element": np.array([7], dtype="i2"),  # netCDF gives a numpy scalar back
        "comment": ODD,
        "empty": "",
    })
    if flavour == "netcdf4":
        attrs["keywords"] = ["ocean", "temperature", "ÿ"]  # NC_STRING array
    history, odd = HISTORY, ODD
    if flavour == "scipy":  # scipy writes text attributes as ASCII only
        history, odd = (t.encode("ascii", "replace").decode() for t in (HISTORY, ODD))
        attrs["comment"] = odd
    variables = [Var("sst", "f4", ("x",), np.arange(3, dtype="f4"), attrs)]
    globals_ = {"history": history, "title": odd, "version": np.int32(3),
                "geospatial_lat_min": np.float64(-90.0), "empty": ""}
    return write_nc(path, flavour, {"x": 3}, variables, globals_)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_file_attributes_come_back_equal_with_their_types(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = attributes_file(path, flavour)
    with xr.open_dataset(path, **kw) as ds:  # what netCDF really gives: numpy types
        assert isinstance(ds["sst"].attrs["scalar_i1"], np.int8)
        assert isinstance(ds["sst"].attrs["flag_values"], np.ndarray)
        assert len(ds.attrs["history"]) == len(HISTORY)
    roundtrip(path, tmp_path / "store", **kw)


def test_in_memory_attribute_kinds_netcdf_libraries_can_produce(tmp_path):
    attrs = {
        "bytes": b"\x00\xffraw",
        "numpy_bytes": np.bytes_(b"abc"),
        "numpy_str": np.str_("text"),
        "bool": np.bool_(True),
        "big_uint": np.uint64(2**64 - 1),
        "list_of_str": ["a", "b"],
        "tuple": (1, 2.5),
        "nested": {"a": [1, 2]},
        "f16_array": np.array([1.5, 2.0], dtype="f2"),
        "big_endian": np.array([1, 2], dtype=">i2"),  # scipy gives these
        "datetime": np.datetime64("2024-01-01T00:00:00", "s"),
    }
    ds = xr.Dataset({"v": ("x", np.arange(2.0), attrs)}, attrs=attrs)
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    store.flush()
    back = atlas.Atlas.open(tmp_path / "store").to_xarray("d")
    assert_same_attrs(dict(back.attrs), attrs, "dataset")
    assert_same_attrs(dict(back["v"].attrs), attrs, "variable 'v'")
