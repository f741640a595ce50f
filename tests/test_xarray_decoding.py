"""xarray's decode keywords, ``storage_options``, an ``Atlas`` handle as the filename, and
``encoding`` chunk shapes, on ``engine="atlas"`` and ``Atlas.to_xarray``.

The reference for the decode keywords is netCDF4: the same Dataset written with ``to_netcdf``
and opened with ``xr.open_dataset(..., engine="netcdf4", **keywords)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from _s3 import moto_s3  # noqa: F401  (fixture)

import atlas

pytest.importorskip("netCDF4")


def sample() -> xr.Dataset:
    """Times, a timedelta, a packed variable, char-array strings, a bool, bounds and a
    non-dimension coordinate: something for every decoder to do."""
    time = pd.date_range("2024-01-01", periods=4, freq="6h").values
    t2m = np.array([[280.5, np.nan, 281.25], [279.0, 282.5, 283.0], [np.nan, 284.0, 285.5],
                    [286.0, 287.5, 288.0]], dtype=np.float32)
    ds = xr.Dataset(
        {"t2m": (("time", "x"), t2m, {"units": "K"}),
         "lag": ("time", np.array([0, 3600, -60, 7200], dtype="timedelta64[s]")),
         "station": ("x", np.array(["de bilt", "cabauw", "ameland"], dtype=object)),
         "ok": ("x", np.array([True, False, True])),
         "time_bnds": (("time", "nv"), np.stack([time, time + np.timedelta64(6, "h")], 1)),
         # encoded lazily these came back otherwise: float64 arithmetic for float32 days, and
         # an error for noon in int16 days (to_netcdf stores hours)
         "lead": ("time", np.array([1, 2, 3, 4], "timedelta64[h]")),
         "seen": ("x", np.array(["2000-01-01T12", "2000-01-02", "2000-01-03"], "M8[ns]")),
         # variable-length strings (netCDF4 reads them fixed width, <U, whatever the
         # keywords: they came back object), one masked by a fill, bytes written as text
         "name": ("x", np.array(["ab", "", "long text"], dtype=object)),
         "note": ("x", np.array(["ab", np.nan, "ü"], dtype=object)),
         "code": ("x", np.array([b"ab", b"", b"c"]))},
        coords={"time": ("time", time, {"bounds": "time_bnds"}),
                "lon": ("x", np.array([4.2, 4.9, 5.6])),
                "x": ("x", np.arange(3))},
    )
    ds["t2m"].encoding = {"dtype": np.dtype("int16"), "scale_factor": 0.25,
                          "add_offset": 280.0, "_FillValue": np.int16(-32767)}
    ds["time"].encoding = {"units": "hours since 2024-01-01", "dtype": np.dtype("int32")}
    ds["time_bnds"].encoding = {"units": "hours since 2024-01-01", "dtype": np.dtype("int32")}
    ds["station"].encoding = {"dtype": "S1"}
    ds["lead"].encoding = {"units": "days", "dtype": np.dtype("float32")}
    ds["seen"].encoding = {"units": "days since 2000-01-01", "dtype": np.dtype("int16")}
    ds["note"].encoding = {"_FillValue": "MISSING"}
    ds["code"].encoding = {"dtype": str}
    return ds


KEYWORDS = [
    {"decode_cf": False},
    {"mask_and_scale": False},
    {"decode_times": False},
    {"decode_timedelta": False},
    {"decode_coords": False},
    {"decode_coords": "all"},
    {"concat_characters": False},
    {"use_cftime": True},
    {"mask_and_scale": True, "decode_times": True},
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(netCDF4 file, atlas store) holding the sample."""
    folder = tmp_path_factory.mktemp("decoding")
    path = folder / "sample.nc"
    sample().to_netcdf(path, engine="netcdf4")
    with atlas.Atlas.create(folder / "store") as store:
        store.add_xr_dataset(sample(), "s")
    return path, folder / "store"


def assert_same_as_netcdf(actual: xr.Dataset, expected: xr.Dataset) -> None:
    actual, expected = actual.load(), expected.load()
    for name, var in actual.variables.items():  # loaded: numpy, not dask reading the store
        assert isinstance(var.data, np.ndarray), (name, type(var.data))
    xr.testing.assert_identical(actual, expected)
    for name, var in expected.variables.items():
        assert actual[name].dtype == var.dtype, name
        for key in ("units", "calendar", "scale_factor", "add_offset", "_FillValue", "dtype"):
            got, want = actual[name].encoding.get(key), var.encoding.get(key)
            assert got == want or (got != got and want != want), (name, key, got, want)


@pytest.mark.parametrize("keywords", KEYWORDS, ids=lambda k: ",".join(f"{a}={b}"
                                                                      for a, b in k.items()))
def test_decode_keywords_give_what_netcdf4_gives(written, keywords):
    path, store_path = written
    with pytest.warns() if "use_cftime" in keywords else _no_check():
        with xr.open_dataset(path, engine="netcdf4", **keywords) as opened:
            expected = opened.load()
    with pytest.warns() if "use_cftime" in keywords else _no_check():
        engine = xr.open_dataset(store_path, engine="atlas", group="s", **keywords)
    assert_same_as_netcdf(engine, expected)
    with pytest.warns() if "use_cftime" in keywords else _no_check():
        direct = atlas.Atlas.open(store_path).to_xarray("s", **keywords)
    assert_same_as_netcdf(direct, expected)


class _no_check:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_without_keywords_the_dataset_comes_back_as_it_went_in(written):
    _path, store_path = written
    opened = xr.open_dataset(store_path, engine="atlas", group="s")
    xr.testing.assert_identical(opened, sample())
    assert opened["ok"].dtype == bool and opened["lag"].dtype == "timedelta64[s]"


def test_decode_keywords_keep_numeric_variables_lazy(written):
    _path, store_path = written
    opened = xr.open_dataset(store_path, engine="atlas", group="s", decode_cf=False)
    assert opened["t2m"].dtype == np.int16
    assert not opened["t2m"].variable._in_memory
    assert opened["t2m"].attrs["scale_factor"] == 0.25


def test_unknown_decode_keywords_are_a_type_error(written):
    _path, store_path = written
    with pytest.raises(TypeError, match="decode_everything"):
        atlas.Atlas.open(store_path).to_xarray("s", decode_everything=True)
    with pytest.raises(TypeError, match="decode_cf"):
        atlas.Atlas.open(store_path).to_xarray("s", decode_cf="yes")


def test_an_atlas_handle_is_a_filename(written):
    _path, store_path = written
    store = atlas.Atlas.open(store_path)
    xr.testing.assert_identical(xr.open_dataset(store, engine="atlas", group="s"), sample())
    xr.testing.assert_identical(xr.open_dataset(store, group="s"), sample())  # guessed engine
    with pytest.raises(ValueError, match="storage_options"):
        xr.open_dataset(store, engine="atlas", group="s", storage_options={"region": "x"})


def test_storage_options_open_a_store_in_object_storage(moto_s3):
    url = f"s3://atlas-test/{moto_s3.new_prefix()}"
    with atlas.Atlas.create(url, **moto_s3.options()) as store:
        store.add_xr_dataset(sample(), "s")
    opened = xr.open_dataset(url, engine="atlas", group="s", storage_options=moto_s3.options())
    xr.testing.assert_identical(opened, sample())
    with pytest.raises(TypeError, match="storage_options"):
        xr.open_dataset(url, engine="atlas", group="s", storage_options="region=us-east-1")


def test_encoding_chunk_shapes_set_the_stored_chunks_and_come_back_preferred(tmp_path):
    ds = xr.Dataset({"a": (("t", "x"), np.arange(40.0).reshape(8, 5)),
                     "b": (("t", "x"), np.arange(40).reshape(8, 5)),
                     "c": ("t", np.arange(8.0)),
                     "d": ("t", np.arange(8.0))})
    ds["a"].encoding["chunksizes"] = (3, 5)  # netCDF's key
    ds["b"].encoding["chunks"] = (4, 2)  # zarr's key
    ds["c"].encoding.update(chunksizes=(2,), original_shape=(16,))  # subset since: stale
    ds["d"].encoding["chunksizes"] = (100,)  # larger than the variable: the whole of it
    with atlas.Atlas.create(tmp_path / "store") as store:
        store.add_xr_dataset(ds, "d")
        view = store.open_dataset("d")
        assert view.array_meta("a")["chunk_shape"] == [3, 5]
        assert view.array_meta("b")["chunk_shape"] == [4, 2]
        assert view.array_meta("c")["chunk_shape"] == [8]
        assert view.array_meta("d")["chunk_shape"] == [8]
        # the chunks= keyword of add_xr_dataset wins over the encoding
        store.add_xr_dataset(ds, "e", chunks={"a": [8, 1]})
        assert store.open_dataset("e").array_meta("a")["chunk_shape"] == [8, 1]
    opened = xr.open_dataset(tmp_path / "store", engine="atlas", group="d")
    assert opened["a"].encoding["preferred_chunks"] == {"t": 3, "x": 5}
    assert opened["b"].encoding["preferred_chunks"] == {"t": 4, "x": 2}
    assert xr.open_dataset(tmp_path / "store", engine="atlas", group="d",
                           chunks={})["b"].chunks == ((4, 4), (2, 2, 1))
    xr.testing.assert_identical(opened, ds)
    bad = ds.copy()
    bad["a"].encoding["chunksizes"] = (0, 5)
    with pytest.raises(ValueError, match=r"encoding\['chunksizes'\].*\[0, 5\]"):
        atlas.Atlas.create(tmp_path / "bad").add_xr_dataset(bad, "d")
