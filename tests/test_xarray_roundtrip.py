"""xarray Datasets in and out of a store: the mapping of the seed's table, checked with
``xr.testing.assert_identical`` against the Dataset that went in (and against netCDF4)."""

from __future__ import annotations

import copy
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import atlas
from atlas.xarray._mapping import COORDS_ATTR, DTYPE_ATTR


def reopened(store: atlas.Atlas) -> atlas.Atlas:
    store.flush()
    return atlas.Atlas.open(store.location)


def roundtrip(tmp_path, ds: xr.Dataset, name: str = "d", **kwargs) -> xr.Dataset:
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, name, **kwargs)
    return reopened(store).to_xarray(name)


def sample(rng: np.random.Generator) -> xr.Dataset:
    time = pd.date_range("2024-01-01", periods=4, freq="6h").values.astype("datetime64[ns]")
    return xr.Dataset(
        data_vars={
            "temperature": (("time", "lat", "lon"),
                            rng.normal(15, 5, (4, 3, 5)).astype(np.float32),
                            {"units": "degC", "long_name": "air temperature"}),
            "pressure": (("time", "lat", "lon"), rng.normal(1013, 8, (4, 3, 5)),
                         {"units": "hPa"}),
            "count": (("lat", "lon"), rng.integers(-50, 50, (3, 5)).astype(np.int16)),
            "flags": (("lon",), rng.integers(0, 2**63, 5, dtype=np.uint64)),
            "level": (("time",), np.arange(4, dtype=np.uint8)),
            "ident": ((), np.int64(42), {"comment": "a 0-D variable"}),
            "weight": ((), 0.25),
        },
        coords={
            "time": time,
            "lat": np.linspace(-10, 10, 3, dtype=np.float32),
            "lon": np.linspace(0, 40, 5),
            "station": (("lon",), np.array(["de bilt", "cabauw", "ameland", "x", "ÿ-umlaut"])),
        },
        attrs={"title": "sample", "version": 3, "scale": 0.5},
    )


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_numeric_datetime_string_and_0d_variables_round_trip_identical(tmp_path, rng):
    ds = sample(rng)
    back = roundtrip(tmp_path, ds)
    xr.testing.assert_identical(ds, back)
    for name, var in ds.variables.items():
        assert back[name].dtype == var.dtype, name
    assert list(back.coords) == list(ds.coords)
    assert list(back.data_vars) == list(ds.data_vars)


def test_zero_d_and_full_shape_variables_come_back_as_numpy(tmp_path, rng):
    back = roundtrip(tmp_path, sample(rng))
    for name in back.variables:
        assert isinstance(back[name].variable._data, np.ndarray) or name in back.indexes, name
    assert back["ident"].shape == () and back["ident"].item() == 42


@pytest.mark.parametrize("unit", ["ns", "us", "ms", "s", "D"])
def test_datetime_coordinates_of_any_unit_are_stored_as_ns_and_come_back_in_their_unit(
        tmp_path, unit):
    times = np.array(["2024-01-01", "2024-02-29", "NaT", "1999-12-31"], dtype=f"datetime64[{unit}]")
    ds = xr.Dataset({"v": ("time", np.arange(4.0))}, coords={"time": ("time", times)})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    assert store.open_dataset("d").array_meta("time")["dtype"] == "timestamp_nanoseconds"
    back = reopened(store).to_xarray("d")
    xr.testing.assert_identical(ds, back)
    assert back["time"].dtype == ds["time"].dtype


def test_datetime_outside_the_ns_range_raises_overflow_and_leaves_no_dataset(tmp_path):
    ds = xr.Dataset({"t": ("x", np.array(["2024-01-01", "3000-01-01"], "datetime64[s]"))})
    store = atlas.Atlas.create(tmp_path / "store")
    with pytest.raises(OverflowError, match="'t'"):
        store.add_xr_dataset(ds, "d")
    assert not store.dataset_exists("d")


@pytest.mark.parametrize("unit", ["ns", "s", "ms"])
def test_timedelta_variables_are_int64_ns_with_a_marker_and_restored(tmp_path, unit):
    values = np.array([0, 1500, -7, "NaT"], dtype=f"timedelta64[{unit}]")
    ds = xr.Dataset({"lag": ("x", values)})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    view = store.open_dataset("d")
    assert view.array_meta("lag")["dtype"] == "int64"
    assert view._all_array_attributes("lag")[DTYPE_ATTR] == f"timedelta64[{unit}]"
    assert view.get_array_attribute("lag", DTYPE_ATTR) is None  # internal: hidden
    np.testing.assert_array_equal(view.read_array("lag"),
                                  values.astype("timedelta64[ns]").view(np.int64))
    back = reopened(store).to_xarray("d")
    xr.testing.assert_identical(ds, back)
    assert back["lag"].dtype == values.dtype


def test_fixed_width_and_object_strings_round_trip_with_their_dtype(tmp_path):
    ds = xr.Dataset({
        "u": (("a", "b"), np.array([["x", "yy"], ["", "zzz"]])),
        "s": ("b", np.array([b"ab", b"c"], dtype="S2")),
        "o": ("a", np.array(["one", "twee"], dtype=object)),
    })
    back = roundtrip(tmp_path, ds)
    xr.testing.assert_identical(ds, back)
    assert [back[n].dtype for n in "uso"] == [ds[n].dtype for n in "uso"]


def test_fill_value_from_encoding_becomes_the_typed_fill_and_returns_to_encoding(tmp_path):
    temp = np.array([1.5, np.nan, 3.0], dtype=np.float32)
    ds = xr.Dataset({"t": ("x", temp), "n": ("x", np.array([1, -1, 3], np.int32))})
    ds["t"].encoding["_FillValue"] = np.float32(-999.0)
    ds["n"].encoding["_FillValue"] = -1
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    view = store.open_dataset("d")
    assert view.array_fill_value("t") == -999.0
    assert view.array_fill_value("n") == -1
    assert "_FillValue" not in view.array_attributes("t")
    back = reopened(store).to_xarray("d")
    xr.testing.assert_identical(ds, back)
    assert back["t"].encoding["_FillValue"] == np.float32(-999.0)
    assert back["t"].encoding["_FillValue"].dtype == np.float32
    assert back["n"].encoding["_FillValue"] == -1
    assert "_FillValue" not in back["t"].attrs


def test_fill_value_in_attrs_returns_to_attrs(tmp_path):
    ds = xr.Dataset({"n": ("x", np.array([5, 0, 7], np.uint16), {"_FillValue": 0, "u": "m"})})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    assert store.open_dataset("d").array_fill_value("n") == 0
    back = reopened(store).to_xarray("d")
    xr.testing.assert_identical(ds, back)
    assert back["n"].attrs["_FillValue"] == 0
    assert "_FillValue" not in back["n"].encoding


def test_ingest_never_mutates_the_callers_dataset(tmp_path, rng):
    ds = sample(rng)
    ds["temperature"].encoding["_FillValue"] = np.float32(np.nan)
    ds["count"].attrs["_FillValue"] = np.int16(-99)
    ds.attrs["list"] = [1, 2]
    before = copy.deepcopy(ds)
    encodings = {k: dict(v.encoding) for k, v in ds.variables.items()}
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    ds.atlas.write(store, "e")
    xr.testing.assert_identical(ds, before)
    assert {k: dict(v.encoding) for k, v in ds.variables.items()}.keys() == encodings.keys()
    for k, v in ds.variables.items():
        assert set(v.encoding) == set(encodings[k]), k
    assert ds["count"].attrs["_FillValue"] == -99


def test_non_scalar_attrs_round_trip_with_type_and_dtype(tmp_path):
    attrs = {
        "list": [1, 2.5, "x", None, [True, False]],
        "tuple": (1, "a"),
        "ints": np.arange(6, dtype=np.int16).reshape(2, 3),
        "floats": np.array([0.5, np.nan], dtype=np.float32),
        "times": np.array(["2024-01-01T06"], dtype="datetime64[h]"),
        "words": np.array(["ab", "c"]),
        "np_scalar": np.float32(2.5),
        "np_int": np.uint8(200),
        "np_time": np.datetime64("2024-01-01", "D"),
        "nested": {"a": [1, {"b": (2, 3)}], "c": np.int64(4)},
        "looks_like_json": "json:not really",
        # valid JSON after the prefix: text, not the value it would spell (it came back as {})
        "json_object": "json:{}",
        "json_list": "json:[1]",
        "json_text": 'json:"s"',
        "big_int": 2**70,
        "flag": True,
        "text": "plain",
    }
    ds = xr.Dataset({"v": ("x", np.zeros(2), dict(attrs))}, attrs=dict(attrs))
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    view = store.open_dataset("d")
    # the store keeps them with their types (one value format): the core API gives them back too
    assert view.get_attribute("list") == attrs["list"]
    # a str that starts with "json:" is stored as the prefix + its JSON text (what stores of
    # format version 1 wrote, decoded on read)
    assert view.get_attribute("looks_like_json") == 'json:"json:not really"'
    assert view.get_attribute("text") == "plain"
    back = reopened(store).to_xarray("d")
    xr.testing.assert_identical(ds, back)
    for got in (back.attrs, back["v"].attrs):
        for key, value in attrs.items():
            assert type(got[key]) is type(value), key
            if isinstance(value, np.ndarray):
                assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            if isinstance(value, np.generic):
                assert got[key].dtype == value.dtype, key
        assert got["nested"]["a"][1]["b"] == (2, 3)
        assert got["looks_like_json"] == "json:not really"


def test_per_variable_attrs_are_array_attributes_and_coords_an_internal_list(tmp_path, rng):
    ds = sample(rng)
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    view = store.open_dataset("d")
    assert view.array_attributes("temperature") == {"units": "degC",
                                                     "long_name": "air temperature"}
    assert view.array_attributes("pressure") == {"units": "hPa"}
    dataset_attrs = view.attributes()
    assert not any("." in key for key in dataset_attrs)
    assert dataset_attrs == ds.attrs  # the internal coordinate list is hidden
    import json

    assert json.loads(view._all_attributes()[COORDS_ATTR]) == list(ds.coords)
    # coordinates are defined before data variables
    assert view.list_arrays() == list(ds.coords) + list(ds.data_vars)


@pytest.mark.parametrize("values", [np.array([1 + 2j, 3j]),
                                    np.array([1.0, 2.0], dtype=np.float16),
                                    pd.Categorical(["a", "b"]),
                                    pd.array([1, None], dtype="Int64"),
                                    pd.period_range("2000-01", periods=2, freq="M")],
                         ids=["complex", "float16", "categorical", "Int64", "period"])
def test_unsupported_variable_dtypes_raise_not_implemented_naming_supported(tmp_path, values):
    ds = xr.Dataset({"ok": ("x", np.arange(2.0)), "bad": ("x", values)})
    store = atlas.Atlas.create(tmp_path / "store")
    with pytest.raises(NotImplementedError, match="'bad'") as err:
        store.add_xr_dataset(ds, "d")
    message = str(err.value)
    for name in ("bool", "int8", "uint64", "float32", "float64", "datetime64", "timedelta64",
                 "str"):
        assert name in message
    assert not store.dataset_exists("d")
    assert store.list_arrays() == []


def test_failed_ingest_midway_leaves_no_trace_after_flush_and_reopen(tmp_path):
    store = atlas.Atlas.create(tmp_path / "store")
    keep = xr.Dataset({"a": ("x", np.arange(3.0))})
    store.add_xr_dataset(keep, "keep")
    store.flush()
    bad = xr.Dataset({"a": ("x", np.arange(3.0)),
                      "b": ("x", np.arange(3, dtype=np.int32)),
                      "s": ("x", np.array(["x", 3, "z"], dtype=object))})  # an int in strings
    with pytest.raises(TypeError, match="str"):
        store.add_xr_dataset(bad, "bad")
    assert store.list_datasets() == ["keep"]
    assert store.list_arrays() == ["a"]
    fresh = reopened(store)
    assert fresh.list_datasets() == ["keep"]
    assert fresh.list_arrays() == ["a"]
    xr.testing.assert_identical(fresh.to_xarray("keep"), keep)
    # the name is free again
    fresh.add_xr_dataset(keep, "bad")
    xr.testing.assert_identical(reopened(fresh).to_xarray("bad"), keep)


def test_failing_dask_block_leaves_no_trace(tmp_path):
    def explode(block, block_info=None):
        if block_info[0]["chunk-location"] == (2,):
            raise RuntimeError("block 2 failed")
        return block

    data = da.arange(10.0, chunks=3).map_blocks(explode, dtype=float)
    ds = xr.Dataset({"v": ("x", data)})
    store = atlas.Atlas.create(tmp_path / "store")
    with pytest.raises(RuntimeError, match="block 2"):
        store.add_xr_dataset(ds, "d")
    assert not store.dataset_exists("d")
    assert reopened(store).list_datasets() == []


def test_existing_dataset_name_raises_and_keeps_the_existing_dataset(tmp_path):
    ds = xr.Dataset({"a": ("x", np.arange(3.0))})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    with pytest.raises(FileExistsError):
        store.add_xr_dataset(ds * 2, "d")
    xr.testing.assert_identical(reopened(store).to_xarray("d"), ds)


def test_missing_string_cells_come_back_missing_with_a_fill_and_empty_without(tmp_path):
    """As netCDF4: with a _FillValue, missing cells are stored as the fill and read back as
    NaN; without one they come back as "" (one warning per variable says so)."""
    cells = np.array(["a", None, "c", np.nan, "e", None], dtype=object)
    ds = xr.Dataset({"s": ("x", cells), "t": ("x", cells.copy())}).chunk({"x": 2})
    ds["t"].encoding["_FillValue"] = "N/A"
    store = atlas.Atlas.create(tmp_path / "store")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.add_xr_dataset(ds, "d")
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and "'s'" in messages[0]
    assert store.open_dataset("d").read_array("t").tolist() == ["a", "N/A", "c", "N/A", "e",
                                                                 "N/A"]
    back = reopened(store).to_xarray("d").compute()
    assert back["s"].values.tolist() == ["a", "", "c", "", "e", ""]
    assert back["t"].values[[0, 2, 4]].tolist() == ["a", "c", "e"]
    assert all(v != v for v in back["t"].values[[1, 3, 5]])  # NaN
    assert back["t"].encoding["_FillValue"] == "N/A"
    assert cells[1] is None  # the caller's data is untouched


def test_add_xr_dataset_does_not_flush(tmp_path, rng):
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(sample(rng), "d")
    assert atlas.Atlas.open(tmp_path / "store").list_datasets() == []
    xr.testing.assert_identical(store.to_xarray("d"), sample(np.random.default_rng(7)))
    store.flush()
    assert atlas.Atlas.open(tmp_path / "store").list_datasets() == ["d"]


def test_accessor_and_later_names_write_and_read_the_same(tmp_path, rng):
    ds = sample(rng)
    with atlas.Atlas.create(tmp_path / "store") as store:
        view = ds.atlas.write(store, "by_accessor")
        assert isinstance(view, atlas.DatasetView) and view.name == "by_accessor"
        store.add_xarray_dataset(ds, "by_alias")
    store = atlas.Atlas.open(tmp_path / "store")
    xr.testing.assert_identical(store.to_xarray("by_accessor"), ds)
    xr.testing.assert_identical(store.open_as_xarray_dataset("by_alias"), ds)
    with pytest.raises(TypeError, match="atlas.Atlas"):
        ds.atlas.write(str(tmp_path / "store"), "x")


def test_dataarray_and_bad_chunks_are_rejected_before_anything_is_written(tmp_path):
    ds = xr.Dataset({"a": (("x", "y"), np.zeros((4, 4)))})
    store = atlas.Atlas.create(tmp_path / "store")
    with pytest.raises(TypeError, match="to_dataset"):
        store.add_xr_dataset(ds["a"], "d")
    with pytest.raises(ValueError, match="'nope'"):
        store.add_xr_dataset(ds, "d", chunks={"nope": [2, 2]})
    with pytest.raises(ValueError, match=r"2 ints >= 1"):
        store.add_xr_dataset(ds, "d", chunks={"a": [2]})
    with pytest.raises(ValueError, match="reserved"):
        store.add_xr_dataset(ds.assign_attrs(_pyatlas_x=1), "d")
    assert store.list_datasets() == []


def test_netcdf4_file_ingested_matches_xr_open_dataset(tmp_path):
    netCDF4 = pytest.importorskip("netCDF4")
    path = tmp_path / "sample.nc"
    rng = np.random.default_rng(3)
    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "netCDF4 sample"
        nc.history = "written by a test"
        nc.setncattr("levels", np.array([1, 2, 3], dtype=np.int32))
        nc.createDimension("time", None)
        nc.createDimension("lat", 4)
        nc.createDimension("lon", 6)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "hours since 2024-01-01 00:00:00"
        t.calendar = "standard"
        t[:] = [0, 6, 12]
        la = nc.createVariable("lat", "f4", ("lat",))
        la.units = "degrees_north"
        la[:] = np.linspace(-45, 45, 4)
        lo = nc.createVariable("lon", "f4", ("lon",))
        lo[:] = np.linspace(0, 300, 6)
        sst = nc.createVariable("sst", "f4", ("time", "lat", "lon"), fill_value=-999.0)
        sst.units = "K"
        sst.valid_range = np.array([250, 320], dtype=np.float32)
        values = rng.normal(290, 5, (3, 4, 6)).astype(np.float32)
        sst[:] = np.ma.masked_where(values > 297, values)
        cnt = nc.createVariable("count", "i4", ("lat", "lon"))
        cnt[:] = rng.integers(0, 100, (4, 6))
        crs = nc.createVariable("crs", "i4", ())
        crs.grid_mapping_name = "latitude_longitude"
        crs.assignValue(0)
        names = nc.createVariable("name", str, ("lat",))
        for i, word in enumerate(["north", "mid", "équateur", "south"]):
            names[i] = word
    with xr.open_dataset(path) as expected:
        expected.load()
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(expected, "nc")
    with xr.open_dataset(path, chunks={"time": 1}) as lazy:
        store.add_xr_dataset(lazy, "nc_dask")
    fresh = reopened(store)
    xr.testing.assert_identical(fresh.to_xarray("nc"), expected)
    xr.testing.assert_identical(fresh.to_xarray("nc_dask").compute(), expected)
    assert fresh.open_dataset("nc").array_fill_value("sst") == -999.0
    assert int(np.isnan(fresh.to_xarray("nc")["sst"].values).sum()) == \
        int(np.isnan(expected["sst"].values).sum()) > 0


def test_datasets_written_without_xarray_read_back_as_data_variables(tmp_path):
    store = atlas.Atlas.create(tmp_path / "store")
    view = store.create_dataset("raw")
    view.define_array("a", "int32", ["x"], [4], [2], fill_value=-1)
    view.write_array("a", [0], np.array([1, 2], np.int32))
    view.set_attribute("k", 3)
    back = reopened(store).to_xarray("raw")
    expected = xr.Dataset({"a": ("x", np.array([1, 2, -1, -1], np.int32))}, attrs={"k": 3})
    xr.testing.assert_identical(back.compute(), expected)
    assert back["a"].encoding["_FillValue"] == -1


def test_zero_length_variables_round_trip(tmp_path):
    ds = xr.Dataset({"e": (("x", "y"), np.zeros((0, 3))),
                     "s": ("x", np.array([], dtype=object))},
                    coords={"x": np.array([], "datetime64[ns]")})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "plain")
    store.add_xr_dataset(ds.chunk({"y": 2}), "chunked")
    fresh = reopened(store)
    for name in ("plain", "chunked"):
        back = fresh.to_xarray(name)
        assert isinstance(back["e"].variable._data, np.ndarray)  # one (empty) chunk: eager
        xr.testing.assert_identical(back, ds)
