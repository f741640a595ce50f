"""Appending along a dimension: ``store.add_xr_dataset(ds, name, append_dim="time")`` and
``ds.atlas.write(store, name, append_dim="time")``, checked against ``xr.concat`` of the pieces
(attributes, dtypes and encodings included, as the round-trip tests check them).

The reference is ``xr.concat(pieces, dim, data_vars="minimal")``: variables without the
dimension are not stacked, as ``to_zarr(append_dim=...)`` leaves them.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import cftime
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from xarray.tests.test_dataset import create_append_test_data

import atlas
from atlas.xarray._mapping import DTYPE_ATTR

sys.path.insert(0, str(Path(__file__).resolve().parent / "fidelity"))
from fidelity_helpers import assert_faithful  # noqa: E402
from test_nc_calendars import calendar_file  # noqa: E402
from test_nc_packing import packed_file  # noqa: E402


def concat(pieces, dim="time") -> xr.Dataset:
    return xr.concat(pieces, dim=dim, data_vars="minimal")


def append_all(store: atlas.Atlas, pieces, name="d", dim="time", accessor=False) -> None:
    for piece in pieces:
        if accessor:
            piece.atlas.write(store, name, append_dim=dim)
        else:
            store.add_xr_dataset(piece, name, append_dim=dim)


def check(store: atlas.Atlas, expected: xr.Dataset, name="d") -> None:
    """Equal before the flush and after the store was reopened."""
    assert_faithful(store.to_xarray(name), expected)
    store.flush()
    assert_faithful(atlas.Atlas.open(store.location).to_xarray(name), expected)


def split(ds: xr.Dataset, dim: str, *bounds: int) -> list[xr.Dataset]:
    edges = [0, *bounds, ds.sizes[dim]]
    return [ds.isel({dim: slice(a, b)}) for a, b in zip(edges[:-1], edges[1:])]


def weather(times, seed=0, width=5) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    n = len(times)
    return xr.Dataset(
        {"t": (("time", "x"), rng.normal(15, 5, (n, width)).astype(np.float32),
               {"units": "degC"}),
         "count": (("time",), rng.integers(0, 9, n).astype(np.int16)),
         "mask": (("x",), np.arange(width) % 2 == 0),
         "station": ((), "de bilt")},
        coords={"time": times, "x": np.arange(width, dtype=np.float64),
                "label": (("time",), np.array([f"t{i}" for i in range(n)], dtype=object))},
        attrs={"title": "weather"})


def hours(start, n):
    return pd.date_range(start, periods=n, freq="h").values.astype("datetime64[ns]")


@pytest.fixture
def store(store_path):
    return atlas.Atlas.create(store_path)


# -- what an append gives back --------------------------------------------------------------


@pytest.mark.parametrize("accessor", [False, True])
def test_xarrays_append_test_data_equals_concat(store, accessor):
    ds, to_append, _ = create_append_test_data(seed=3)
    store.add_xr_dataset(ds, "d")
    append_all(store, [to_append], accessor=accessor)
    check(store, concat([ds, to_append]))


def test_a_missing_name_is_written_as_a_normal_add_and_later_pieces_append(store):
    pieces = split(weather(hours("2024-01-01", 10)), "time", 3, 4, 9)
    append_all(store, pieces, accessor=True)
    check(store, concat(pieces))
    more = weather(hours("2024-02-01", 4), seed=1)
    store = atlas.Atlas.open(store.location)
    more["mask"] = pieces[0]["mask"]  # variables without the dimension must be equal
    store.add_xr_dataset(more, "d", append_dim="time")
    check(store, concat([*pieces, more]))


def test_statistics_after_an_append_are_exact(store):
    pieces = split(weather(hours("2024-01-01", 7)), "time", 2)
    append_all(store, pieces)
    store.flush()
    whole = concat(pieces)
    view = store.open_dataset("d")
    t = whole["t"].values
    assert view.array_stats("t") == {"row_count": t.size, "null_count": 0,
                                     "min": float(t.min()), "max": float(t.max())}
    labels = whole["label"].values
    assert view.array_stats("label") == {"row_count": 7, "null_count": 0,
                                         "min": min(labels), "max": max(labels)}
    assert view.array_stats("time")["max"] == whole["time"].values.max()


def test_times_encoded_with_units_and_calendar_append(tmp_path, store):
    times = hours("2024-03-01", 9)
    # (a bool variable read from netCDF has encoding["dtype"] "bool", which comes back as
    # np.dtype(bool) with or without an append: left out here)
    source = weather(times).drop_vars("mask")
    source["time"].encoding.update(units="hours since 2024-01-01", calendar="proleptic_gregorian",
                                   dtype=np.dtype("int32"))
    source["t"].encoding.update(_FillValue=np.float32(-999.0))
    paths = []
    for i, piece in enumerate(split(source, "time", 4)):
        paths.append(tmp_path / f"part{i}.nc")
        piece.to_netcdf(paths[-1], unlimited_dims=["time"])
    opened = [xr.open_dataset(p) for p in paths]
    try:
        assert opened[0]["time"].encoding["units"] == "hours since 2024-01-01"
        append_all(store, opened)
        check(store, concat(opened))
        back = store.to_xarray("d")
        assert back["time"].encoding["calendar"] == "proleptic_gregorian"
        assert back.encoding["unlimited_dims"] == {"time"}
        # decoded as netCDF would decode a file written from it
        raw = store.to_xarray("d", decode_times=False)
        np.testing.assert_array_equal(raw["time"].values, np.arange(1440, 1449))  # 60 days
    finally:
        for ds in opened:
            ds.close()


@pytest.mark.parametrize("calendar", ["noleap", "360_day", "julian"])
def test_cftime_times_of_model_calendars_append(tmp_path, store, calendar):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, "netcdf4", calendar)
    with xr.open_dataset(path, **kw) as whole:
        assert isinstance(whole["time"].values[0], cftime.datetime)
        pieces = split(whole.load(), "time", 5, 6)
        append_all(store, pieces)
        check(store, concat(pieces))
        check(store, whole)


def test_generic_cftime_datetimes_built_in_memory_append(store):
    def piece(first, n):
        times = [cftime.datetime(2000, 1, 1 + d, calendar="360_day") for d in range(first,
                                                                                    first + n)]
        return xr.Dataset({"v": (("time",), np.arange(first, first + n, dtype=np.float64))},
                          coords={"time": np.array(times, dtype=object)})

    pieces = [piece(0, 3), piece(3, 4)]
    append_all(store, pieces)
    check(store, concat(pieces))
    assert type(store.to_xarray("d")["time"].values[-1]) is cftime.datetime


def test_packed_variables_append_packed(tmp_path, store):
    path = tmp_path / "f.nc"
    kw = packed_file(path, "netcdf4")
    with xr.open_dataset(path, **kw) as whole:
        pieces = split(whole.load(), "time", 10)
        append_all(store, pieces)
        check(store, concat(pieces))
        assert store.open_dataset("d").array_meta("t2m")["dtype"] == "int16"


def test_string_variables_append_and_fixed_widths_widen(store):
    def piece(words, raw):
        n = len(words)
        ds = xr.Dataset({"name": (("time",), np.array(words, dtype=object)),
                         "fixed": (("time",), np.array(words)),
                         "raw": (("time",), np.array(raw)),
                         "code": (("time",), np.array(words, dtype=object))},
                        coords={"time": np.arange(n, dtype=np.int64)})
        ds["code"].encoding["_FillValue"] = "N/A"
        return ds

    first = piece(["ab", "c", "é"], [b"x", b"yy", b"\xff"])
    second = piece(["longer", None, "z"], [b"zzzzz", b"q", b"\xfe\xfd"]).assign_coords(
        time=[3, 4, 5])
    second["name"] = first["name"].copy(data=np.array(["d", "e", "f"], dtype=object)).assign_coords(
        time=[3, 4, 5])
    second["fixed"] = xr.DataArray(np.array(["wider!", "", "z"]), dims="time",
                                   coords={"time": [3, 4, 5]})
    assert first["fixed"].dtype == "<U2" and second["fixed"].dtype == "<U6"
    append_all(store, [first, second])
    expected = concat([first, second])
    assert expected["fixed"].dtype == "<U6" and expected["raw"].dtype == "|S5"
    check(store, expected)
    assert store.open_dataset("d")._all_array_attributes("fixed")[DTYPE_ATTR] == "<U6"
    back = store.to_xarray("d")
    assert back["code"].values[4] != back["code"].values[4]  # missing: NaN, from the fill


def test_dask_backed_pieces_append_block_by_block(store):
    whole = weather(hours("2024-01-01", 12), width=6)
    first, second = split(whole, "time", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # object dask arrays are loaded to look at them
        store.add_xr_dataset(first.chunk({"time": 2, "x": 3}), "d")
        assert store.open_dataset("d").array_meta("t")["chunk_shape"] == [2, 3]
        # blocks that do not line up with the stored chunks, and an edge chunk that fills up
        store.add_xr_dataset(second.chunk({"time": 3, "x": 4}), "d", append_dim="time")
    check(store, concat([first, second]))
    assert isinstance(store.to_xarray("d")["t"].data, da.Array)


def test_appending_along_a_trailing_dimension(store):
    def piece(lon, seed):
        rng = np.random.default_rng(seed)
        return xr.Dataset({"v": (("lat", "lon"), rng.random((3, len(lon))))},
                          coords={"lat": [1.0, 2.0, 3.0], "lon": lon})

    pieces = [piece([0.0, 1.0, 2.0], 0), piece([3.0, 4.0], 1), piece([5.0], 2)]
    store.add_xr_dataset(pieces[0], "d", chunks={"v": [2, 2]})
    append_all(store, pieces[1:], dim="lon")
    check(store, concat(pieces, dim="lon"))


def test_appending_nothing_along_the_dimension_changes_nothing(store):
    whole = weather(hours("2024-01-01", 4))
    store.add_xr_dataset(whole, "d")
    store.add_xr_dataset(whole.isel(time=slice(0, 0)), "d", append_dim="time")
    check(store, whole)


# -- what an append refuses, before anything is written ------------------------------------


def _refused(store, ds, error, match, **kwargs):
    before = store.to_xarray("d").load()
    generation = store.generation
    with pytest.raises(error, match=match):
        store.add_xr_dataset(ds, "d", **kwargs)
    store.flush()
    assert store.generation == generation, "the refused append left changes behind"
    xr.testing.assert_identical(store.to_xarray("d"), before)


@pytest.fixture
def stored(store):
    store.add_xr_dataset(weather(hours("2024-01-01", 4)), "d")
    store.flush()
    return store


def more(**changes):
    ds = weather(hours("2024-01-02", 3), seed=5)
    ds["mask"] = weather(hours("2024-01-01", 1))["mask"]
    return ds.assign(**changes) if changes else ds


def test_new_and_missing_variables_are_refused(stored):
    _refused(stored, more(extra=(("time",), np.zeros(3))), ValueError,
             r"variables \['extra'\] are not in the stored dataset", append_dim="time")
    _refused(stored, more().drop_vars("count"), ValueError,
             r"lacks the stored variables \['count'\]", append_dim="time")


def test_other_dimensions_must_keep_their_sizes_and_order(stored):
    wide = weather(hours("2024-01-02", 3), width=6)
    _refused(stored, wide, ValueError, r"dimension 'x' has size 5 in the store and 6",
             append_dim="time")
    swapped = more()
    swapped["t"] = swapped["t"].transpose("x", "time")
    _refused(stored, swapped, ValueError, r"dimensions \['time', 'x'\], the Dataset to append "
             r"with \['x', 'time'\]", append_dim="time")


def test_dtypes_must_match(stored):
    _refused(stored, more(t=more()["t"].astype(np.float64)), ValueError,
             r"variable 't' .* holds it as float32, the Dataset to append gives float64",
             append_dim="time")
    _refused(stored, more(count=more()["count"].astype(np.int32)), ValueError,
             r"variable 'count'", append_dim="time")


def test_encodings_and_fills_must_not_contradict_the_stored_ones(store):
    first = weather(hours("2024-01-01", 4))
    first["time"].encoding["units"] = "hours since 2024-01-01"
    first["t"].encoding["_FillValue"] = np.float32(-1.0)
    store.add_xr_dataset(first, "d")
    store.flush()
    other_units = more()
    other_units["time"].encoding["units"] = "days since 2024-01-01"
    _refused(store, other_units, ValueError,
             r"variable 'time' .* encoding\['units'\] is 'hours since 2024-01-01' in the "
             r"store and 'days since 2024-01-01'", append_dim="time")
    other_fill = more()
    other_fill["t"].encoding["_FillValue"] = np.float32(-2.0)
    _refused(store, other_fill, ValueError, r"variable 't' .*_FillValue", append_dim="time")
    # keys only one side has are no contradiction; the stored encoding stays
    store.add_xr_dataset(more(), "d", append_dim="time")
    back = store.to_xarray("d")
    assert back["time"].encoding["units"] == "hours since 2024-01-01"
    assert back["t"].encoding["_FillValue"] == np.float32(-1.0)


def test_variables_without_the_dimension_must_equal_the_stored_ones(stored):
    changed = more()
    changed["mask"] = ~changed["mask"]
    _refused(stored, changed, ValueError, r"variable 'mask' .* has no dimension 'time', so it "
             r"must equal the stored one", append_dim="time")
    _refused(stored, more(station="cabauw"), ValueError, r"variable 'station'",
             append_dim="time")


def test_coordinates_stay_coordinates(stored):
    _refused(stored, more().reset_coords("label"), ValueError,
             r"'label' is a coordinate in the store and a data variable", append_dim="time")


def test_bad_append_dims_and_chunks_are_refused(stored):
    _refused(stored, more(), ValueError, r"append_dim 'tim' is not a dimension of the Dataset",
             append_dim="tim")
    other = more().rename({"time": "t2"})
    _refused(stored, other, ValueError, r"append_dim='t2' does not match any existing dataset "
             r"dimension \['time', 'x'\]", append_dim="t2")
    _refused(stored, more(), ValueError, r"chunks= cannot change", append_dim="time",
             chunks={"t": [1, 1]})
    _refused(stored, more(), FileExistsError, r"already exists")  # no append_dim: a new add


def test_a_write_that_fails_part_way_leaves_the_stored_dataset_as_it_was(stored):
    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 1:
            raise RuntimeError("boom")
        return block

    before = stored.to_xarray("d").load()
    bad = more()
    bad["t"] = bad["t"].copy(data=da.from_array(bad["t"].values, chunks=(1, 5)).map_blocks(
        explode, dtype=np.float32))
    with pytest.raises(RuntimeError, match="boom"):
        stored.add_xr_dataset(bad, "d", append_dim="time")
    xr.testing.assert_identical(stored.to_xarray("d"), before)
    stored.flush()
    reopened = atlas.Atlas.open(stored.location)
    xr.testing.assert_identical(reopened.to_xarray("d"), before)
    t = before["t"].values
    assert reopened.open_dataset("d").array_stats("t") == {
        "row_count": t.size, "null_count": 0, "min": float(t.min()), "max": float(t.max())}
    # and a good append still works afterwards
    reopened.add_xr_dataset(more(), "d", append_dim="time")
    check(reopened, concat([before, more()]))


def test_a_string_widened_then_rolled_back_keeps_its_width(stored):
    def explode(block):
        raise RuntimeError("boom")

    bad = more(label=(("time",), np.array(["a much longer label"] * 3)))
    bad = bad.set_coords("label")
    bad["count"] = bad["count"].copy(data=da.from_array(bad["count"].values).map_blocks(
        explode, dtype=np.int16))
    first = weather(hours("2024-01-01", 4))
    first["label"] = first["label"].astype("<U4")
    store = atlas.Atlas.create(Path(stored.location).parent / "other")
    store.add_xr_dataset(first, "d")
    with pytest.raises(RuntimeError, match="boom"):
        store.add_xr_dataset(bad, "d", append_dim="time")
    assert store.open_dataset("d")._all_array_attributes("label")[DTYPE_ATTR] == "<U4"
    xr.testing.assert_identical(store.to_xarray("d"), first)


def test_a_time_out_of_range_rolls_the_append_back(store):
    def piece(times):
        return xr.Dataset({"v": (("time",), np.arange(float(len(times))))},
                          coords={"time": np.array(times, dtype="datetime64[us]")})

    first = piece(["2024-01-01", "2024-01-02"])  # microseconds: stored as ns, unit kept
    store.add_xr_dataset(first, "d")
    store.flush()
    with pytest.raises(OverflowError, match="cannot be stored exactly"):
        store.add_xr_dataset(piece(["2024-01-03", "2300-01-01"]), "d", append_dim="time")
    xr.testing.assert_identical(store.to_xarray("d"), first)
    store.flush()
    xr.testing.assert_identical(atlas.Atlas.open(store.location).to_xarray("d"), first)


def test_another_calendar_or_a_new_fill_is_refused(store):
    def piece(calendar, first, fill=None):
        times = [cftime.datetime(2000, 1, 1 + d, calendar=calendar) for d in range(first,
                                                                                   first + 2)]
        ds = xr.Dataset({"v": (("time",), np.arange(2.0))},
                        coords={"time": np.array(times, dtype=object)})
        if fill is not None:
            ds["v"].encoding["_FillValue"] = fill
        return ds

    store.add_xr_dataset(piece("360_day", 0), "d")
    store.flush()
    _refused(store, piece("noleap", 2), ValueError,
             r"variable 'time' .* holds it as cftime datetimes of calendar '360_day', the "
             r"Dataset to append gives cftime datetimes of calendar 'noleap'", append_dim="time")
    _refused(store, piece("360_day", 2, fill=-1.0), ValueError,
             r"variable 'v' .* _FillValue is None in the store and -1.0", append_dim="time")


def test_the_backend_engine_reads_the_appended_dataset(store):
    pieces = split(weather(hours("2024-01-01", 6)), "time", 2)
    append_all(store, pieces)
    store.flush()
    with xr.open_dataset(atlas.Atlas.open(store.location), engine="atlas", group="d") as back:
        xr.testing.assert_identical(back.load(), concat(pieces))
