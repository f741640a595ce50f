"""Times that xarray decodes to cftime objects (model calendars, standard dates outside the
datetime64[ns] range, year 0) and their bounds come back as the same objects."""

from __future__ import annotations

import cftime
import numpy as np
import pytest
import xarray as xr
from fidelity_helpers import FLAVOURS, Var, assert_faithful, roundtrip, write_nc

import atlas
from atlas.xarray._cf import UNITS

MODEL_CALENDARS = ("noleap", "365_day", "360_day", "julian", "all_leap")


def calendar_file(path, flavour, calendar, units="days since 0001-01-01", start=0.0,
                  time_name="time", time_fill=None):
    """A CMIP-like monthly file: time with bounds, a 2-D field, a cell-methods attribute
    (``time_name`` other than "time" makes the time a data variable along dimension time)."""
    times = start + np.arange(0.0, 400.0, 30.5) + 0.25  # fractions of a day give hours
    bounds = np.stack([times - 15.0, times + 15.5], axis=1)
    n = len(times)
    variables = [
        Var(time_name, "f8", ("time",), times,
            {"units": units, "calendar": calendar, "bounds": "time_bnds",
             "standard_name": "time", "axis": "T"}, fill=time_fill),
        Var("time_bnds", "f8", ("time", "bnds"), bounds),
        Var("tas", "f4", ("time", "lat"), np.arange(n * 3, dtype="f4").reshape(n, 3),
            {"units": "K", "cell_methods": "time: mean"}, fill=np.float32(1e20)),
        Var("lat", "f8", ("lat",), np.array([-45.0, 0.0, 45.0]), {"units": "degrees_north"}),
    ]
    return write_nc(path, flavour, {"time": None, "bnds": 2, "lat": 3}, variables,
                    {"Conventions": "CF-1.7", "source": "a model"})


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("calendar", MODEL_CALENDARS)
def test_model_calendars_come_back_as_the_same_cftime_objects(tmp_path, flavour, calendar):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, flavour, calendar)
    with xr.open_dataset(path, **kw) as ds:  # the file really decodes to cftime
        assert isinstance(ds["time"].values[0], cftime.datetime)
        assert isinstance(ds["time_bnds"].values[0, 0], cftime.datetime)
    roundtrip(path, tmp_path / "store", **kw)


@pytest.mark.parametrize("calendar, units, start", [
    ("standard", "days since 2500-01-01", 0.0),  # after 2262
    ("gregorian", "hours since 1500-01-01", 0.0),  # before 1678, Julian part of the calendar
    ("proleptic_gregorian", "days since 0000-01-01", -40.0),  # year 0 and year -1
    ("proleptic_gregorian", "days since 1970-01-01", -1e6),  # about 770 BC
])
def test_standard_dates_outside_the_ns_range_and_year_zero_come_back(tmp_path, calendar,
                                                                     units, start):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, "netcdf4", calendar, units, start)
    with xr.open_dataset(path, **kw) as ds:
        assert ds["time"].dtype == object
    roundtrip(path, tmp_path / "store", **kw)


def test_cftime_is_stored_cf_style_as_int64_microseconds_with_units_and_calendar(tmp_path):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, "netcdf4", "360_day")
    store = roundtrip(path, tmp_path / "store", **kw)
    view = store.open_dataset("d")
    assert view.array_meta("time")["dtype"] == "int64"
    assert view.get_array_attribute("time", "units") == UNITS
    assert view.get_array_attribute("time", "calendar") == "360_day"
    with xr.open_dataset(path, **kw) as ds:
        expected = cftime.date2num(ds["time"].values, UNITS, "360_day")
        expected_bounds = cftime.date2num(ds["time_bnds"].values, UNITS, "360_day")
    np.testing.assert_array_equal(view.read_array("time"), expected)
    np.testing.assert_array_equal(view.read_array("time_bnds"), expected_bounds)


def test_time_bounds_keep_their_units_and_calendar_in_the_encoding(tmp_path):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, "netcdf4", "noleap", "hours since 1850-01-01")
    back = roundtrip(path, tmp_path / "store", **kw).to_xarray("d")
    assert back["time_bnds"].encoding["units"] == "hours since 1850-01-01"
    assert back["time_bnds"].encoding["calendar"] == "noleap"
    assert "units" not in back["time_bnds"].attrs


def test_chunked_cftime_variables_read_lazily_and_through_the_backend(tmp_path):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, "netcdf4", "julian")
    store = roundtrip(path, tmp_path / "store", chunks={"time_bnds": [4, 2], "tas": [5, 3]},
                      **kw)
    back = store.to_xarray("d")
    assert back["time_bnds"].chunks is not None  # dask-backed, decoded per chunk
    with xr.open_dataset(path, **kw) as expected:
        assert_faithful(back.compute(), expected)
        assert_faithful(xr.open_dataset(store.location, engine="atlas", group="d"), expected)


def test_datasets_with_one_calendar_stack_and_different_calendars_refuse(tmp_path):
    paths = {}
    for name, calendar in (("a", "noleap"), ("b", "noleap"), ("c", "360_day")):
        paths[name] = tmp_path / f"{name}.nc"
        calendar_file(paths[name], "netcdf4", calendar, time_name="t")
    store = atlas.Atlas.create(tmp_path / "store")
    for name, path in paths.items():
        with xr.open_dataset(path) as ds:
            assert "t" in ds.data_vars
            store.add_xr_dataset(ds, name)
    stacked = store.to_xarray_many(["a", "b"])
    with xr.open_dataset(paths["a"]) as a, xr.open_dataset(paths["b"]) as b:
        expected = xr.concat([a["t"], b["t"]], dim="dataset").values
    assert [type(v) for v in stacked["t"].values.flat] == [type(v) for v in expected.flat]
    np.testing.assert_array_equal(stacked["t"].values, expected)
    with pytest.raises(ValueError, match="'c'"):
        store.to_xarray_many(["a", "b", "c"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_masked_model_calendar_times_come_back_as_xarray_decodes_them(tmp_path, flavour):
    variables = [Var("time", "f8", ("time",), np.array([0.0, -1.0, 59.5, 365.0]),
                     {"units": "days since 2000-01-01", "calendar": "noleap"},
                     fill=np.float64(-1.0))]
    path = tmp_path / "f.nc"
    kw = write_nc(path, flavour, {"time": 4}, variables)
    roundtrip(path, tmp_path / "store", **kw)


def test_mixed_calendars_in_one_variable_are_refused_with_the_calendars_named(tmp_path):
    mixed = np.array([cftime.DatetimeNoLeap(2000, 1, 1), cftime.Datetime360Day(2000, 1, 1)],
                     dtype=object)
    store = atlas.Atlas.create(tmp_path / "store")
    with pytest.raises(TypeError, match="360_day.*noleap|noleap.*360_day"):
        store.add_xr_dataset(xr.Dataset({"t": ("x", mixed)}), "d")
    assert not store.dataset_exists("d")


@pytest.mark.parametrize("calendar", ("noleap", "360_day", "standard", "julian"))
def test_generic_cftime_datetimes_come_back_as_that_class(tmp_path, calendar):
    """``cftime.datetime(y, m, d, calendar=...)`` (the class newer cftime builds) is kept as
    such, not turned into the calendar's subclass (DatetimeNoLeap, ...)."""
    times = [cftime.datetime(1850, m, 1, 6, calendar=calendar) for m in (1, 2, 3)]
    ds = xr.Dataset({"tas": ("time", np.arange(3, dtype="f4"))}, coords={"time": times})
    store = atlas.Atlas.create(tmp_path / "s")
    store.add_xr_dataset(ds, "one")
    store.flush()
    back = atlas.Atlas.open(tmp_path / "s").to_xarray("one")
    xr.testing.assert_identical(back, ds)
    assert all(type(t) is cftime.datetime and t.calendar == calendar
               for t in back["time"].values)


def test_cftime_dates_beyond_the_stored_range_raise_naming_the_variable(tmp_path):
    # int64 microseconds since 1970 hold about +-292,000 years: a long spin-up run's dates past
    # that raise (naming the variable and its range), and no dataset is left behind
    ds = xr.Dataset({"t": ("x", np.array([cftime.DatetimeNoLeap(9999, 12, 31),
                                          cftime.DatetimeNoLeap(300000, 1, 1)]))})
    store = atlas.Atlas.create(tmp_path / "store")
    with pytest.raises(OverflowError, match="variable 't'.*300000-01-01.*292,000 years"):
        store.add_xr_dataset(ds, "d")
    assert "d" not in store
