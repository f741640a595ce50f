"""Packed (scale_factor/add_offset) and masked (_FillValue/missing_value) integer variables come
back exactly as xarray decodes them, and stay packed integers in the store."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr
from fidelity_helpers import FLAVOURS, Var, assert_faithful, roundtrip, write_nc

import atlas


def packed_file(path, flavour, scale=0.01, offset=273.15, seed=0, shape=(24, 30)):
    """An ERA5-like int16 field with scale/offset and a fill, plus masked integer variables."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(-32000, 32000, shape).astype("i2")
    raw[0, :5] = -32767
    counts = np.arange(shape[0], dtype="i4")
    counts[3] = -999
    levels = np.arange(shape[1], dtype="i2")
    levels[2] = -99
    nc3 = flavour != "netcdf4"
    variables = [
        Var("t2m", "i2", ("time", "x"), raw,
            {"scale_factor": np.float64(scale) if nc3 else np.float32(scale),
             "add_offset": np.float64(offset), "units": "K", "long_name": "2 metre temperature"},
            fill=np.int16(-32767)),
        Var("count", "i4", ("time",), counts, {"long_name": "observations"},
            fill=np.int32(-999)),
        Var("level_flag", "i2", ("x",), levels, {"missing_value": np.int16(-99)}),
        Var("wind", "i1", ("x",), (np.arange(shape[1]) % 30 - 15).astype("i1"),
            {"scale_factor": np.float32(0.5), "units": "m s-1"}),
    ]
    cloud = (100 + np.arange(shape[1]) % 30).astype("u1")
    if nc3:  # the NETCDF3 way to store unsigned bytes
        variables.append(Var("cloud", "i1", ("x",), cloud.view("i1"),
                             {"_Unsigned": "true", "scale_factor": np.float32(0.25)},
                             fill=np.int8(-1)))
    else:
        variables.append(Var("cloud", "u1", ("x",), cloud, {"scale_factor": np.float32(0.25)},
                             fill=np.uint8(255)))
    return write_nc(path, flavour, {"time": shape[0], "x": shape[1]}, variables,
                    {"Conventions": "CF-1.6"})


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_packed_and_masked_variables_come_back_as_xarray_decodes_them(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = packed_file(path, flavour)
    with xr.open_dataset(path, **kw) as ds:  # the file really is decoded to masked floats
        assert ds["t2m"].dtype.kind == "f" and np.isnan(ds["t2m"].values[0, 0])
        assert ds["count"].dtype.kind == "f" and np.isnan(ds["count"].values[3])
    roundtrip(path, tmp_path / "store", **kw)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_packed_variables_are_stored_as_the_packed_integers(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = packed_file(path, flavour)
    store = roundtrip(path, tmp_path / "store", **kw)
    view = store.open_dataset("d")
    with xr.open_dataset(path, mask_and_scale=False, **kw) as raw:
        for name in ("t2m", "count", "level_flag", "wind", "cloud"):
            assert view.array_meta(name)["dtype"] == raw[name].dtype.name, name
            np.testing.assert_array_equal(view.read_array(name), raw[name].values)
        assert view.get_array_attribute("t2m", "scale_factor") == raw["t2m"].attrs["scale_factor"]
    assert view.array_fill_value("t2m") == -32767
    stats = view.array_stats("t2m")  # the masked cells count as nulls of the packed array
    assert stats["null_count"] == 5


def test_a_packed_store_is_not_larger_than_its_netcdf_source(tmp_path):
    path = tmp_path / "f.nc"
    packed_file(path, "netcdf4", shape=(200, 300))
    store = roundtrip(path, tmp_path / "store")
    stored = sum(os.path.getsize(os.path.join(d, f))
                 for d, _, files in os.walk(store.location) for f in files)
    # float64 decoded values would take 4x the int16 bytes of the file
    assert stored < 1.2 * os.path.getsize(path)


def test_values_changed_after_opening_are_stored_decoded_not_packed_lossily(tmp_path):
    path = tmp_path / "f.nc"
    packed_file(path, "netcdf4")
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["t2m"].values[1, 1] += 1e-7  # no longer on the scale_factor grid; encoding kept
    assert "scale_factor" in ds["t2m"].encoding
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    store.flush()
    back = atlas.Atlas.open(tmp_path / "store").to_xarray("d")
    assert_faithful(back, ds)
    assert store.open_dataset("d").array_meta("t2m")["dtype"] == "float64"


def test_dask_backed_packed_variables_stream_packed_and_inexact_values_raise(tmp_path):
    path = tmp_path / "f.nc"
    packed_file(path, "netcdf4")
    with xr.open_dataset(path, chunks={"time": 8}) as ds:
        store = atlas.Atlas.create(tmp_path / "store")
        store.add_xr_dataset(ds, "d")
        assert store.open_dataset("d").array_meta("t2m")["dtype"] == "int16"
        assert store.open_dataset("d").array_meta("t2m")["chunk_shape"] == [8, 30]
        store.flush()
        back = atlas.Atlas.open(tmp_path / "store").to_xarray("d")
        assert back["t2m"].chunks is not None
        assert_faithful(back, ds)
        changed = ds.copy()
        changed["t2m"] = ds["t2m"] + 1e-7
        changed["t2m"].encoding = ds["t2m"].encoding
        with pytest.raises(ValueError, match="not exactly representable"):
            store.add_xr_dataset(changed, "e")
        assert not store.dataset_exists("e")


def test_datasets_packed_alike_stack_and_different_scales_refuse(tmp_path):
    store = atlas.Atlas.create(tmp_path / "store")
    expected = []
    for name, scale, seed in (("a", 0.01, 1), ("b", 0.01, 2), ("c", 0.02, 3)):
        path = tmp_path / f"{name}.nc"
        packed_file(path, "netcdf4", scale=scale, seed=seed)
        with xr.open_dataset(path) as ds:
            store.add_xr_dataset(ds, name)
            expected.append(ds["t2m"].values)
    stacked = store.to_xarray_many(["a", "b"])["t2m"]
    np.testing.assert_array_equal(stacked.values, np.stack(expected[:2]))
    with pytest.raises(ValueError, match="'c'.*scale_factor"):
        store.to_xarray_many(["a", "b", "c"])


def test_netcdf4_enum_variables_with_a_fill_round_trip(tmp_path):
    import netCDF4

    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("t", 4)
        flag = nc.createEnumType(np.uint8, "cloud_t", {"clear": 0, "cloudy": 1, "missing": 255})
        v = nc.createVariable("cloud", flag, ("t",), fill_value=255)
        v[:] = np.array([0, 1, 255, 0], dtype="u1")
        w = nc.createVariable("sky", flag, ("t",))
        w[:] = np.array([1, 1, 0, 0], dtype="u1")
    roundtrip(path, tmp_path / "store")
