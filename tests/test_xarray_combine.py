"""``Atlas.open_mfdataset``: datasets combined along real dimensions, checked against
``xr.open_mfdataset`` over the same datasets written as netCDF files."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import atlas

pytest.importorskip("netCDF4")

EXPLICIT = dict(data_vars="all", coords="different", compat="no_conflicts", join="outer")


def tile(t0: int, x0: int, nt: int = 3, nx: int = 4) -> xr.Dataset:
    rng = np.random.default_rng(100 * t0 + x0)
    return xr.Dataset(
        {"sst": (("time", "x"), rng.normal(15, 3, (nt, nx)).astype(np.float32),
                 {"units": "degC"}),
         "n": ("time", np.arange(nt, dtype=np.int32) + t0)},
        coords={"time": pd.date_range("2024-01-01", periods=12, freq="D").values[t0:t0 + nt],
                "x": np.arange(x0, x0 + nx, dtype=np.float64)},
        attrs={"tile": f"{t0}-{x0}"})


@pytest.fixture
def tiles(tmp_path):
    """Four tiles of a (time, x) grid, stored (and written as netCDF files) out of order."""
    parts = {"t3x4": tile(3, 4), "t0x0": tile(0, 0), "t0x4": tile(0, 4), "t3x0": tile(3, 0)}
    with atlas.Atlas.create(tmp_path / "store") as store:
        for name, ds in parts.items():
            store.add_xr_dataset(ds, name, chunks={"sst": [2, 2]})
    files = {}
    for name, ds in parts.items():
        files[name] = tmp_path / f"{name}.nc"
        ds.to_netcdf(files[name])
    return atlas.Atlas.open(tmp_path / "store"), files


def reference(paths, **kwargs) -> xr.Dataset:
    with xr.open_mfdataset(paths, engine="netcdf4", **kwargs) as ds:
        return ds.load()


def test_by_coords_orders_datasets_by_their_coordinates_like_open_mfdataset(tiles):
    store, files = tiles
    names = list(files)
    combined = store.open_mfdataset(names, **EXPLICIT)
    expected = reference([files[n] for n in names], **EXPLICIT)
    xr.testing.assert_identical(combined.compute(), expected)
    assert combined["sst"].dtype == np.float32 and combined.sizes == {"time": 6, "x": 8}


def test_nested_concatenates_in_the_order_given_along_each_concat_dim(tiles):
    store, files = tiles
    grid = [["t0x0", "t0x4"], ["t3x0", "t3x4"]]
    combined = store.open_mfdataset(grid, combine="nested", concat_dim=["time", "x"],
                                    **EXPLICIT)
    expected = reference([[files[n] for n in row] for row in grid], combine="nested",
                         concat_dim=["time", "x"], **EXPLICIT)
    xr.testing.assert_identical(combined.compute(), expected)
    # a new dimension, one level
    runs = store.open_mfdataset(["t0x0", "t3x0"], combine="nested", concat_dim="run",
                                **EXPLICIT)
    expected = reference([files["t0x0"], files["t3x0"]], combine="nested", concat_dim="run",
                         **EXPLICIT)
    xr.testing.assert_identical(runs.compute(), expected)


def test_xarrays_own_defaults_apply_when_none_are_given(tiles):
    store, files = tiles
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # xarray's notice of new defaults
        combined = store.open_mfdataset(list(files))
        expected = reference(list(files.values()))
    xr.testing.assert_identical(combined.compute(), expected)


def test_combining_is_lazy(tiles, monkeypatch):
    store, files = tiles
    reads = []
    original = atlas.DatasetView.read_array

    def spy(self, name, start=None, shape=None):
        reads.append(name)
        return original(self, name, start, shape)

    monkeypatch.setattr(atlas.DatasetView, "read_array", spy)
    combined = store.open_mfdataset(list(files), **EXPLICIT)
    assert set(reads) <= {"time", "x"}  # only the coordinates xarray combines by
    assert combined["sst"].chunks is not None and combined["n"].chunks is not None
    reads.clear()
    combined["sst"].isel(time=0, x=0).compute()
    assert reads == ["sst"]  # one stored chunk


def test_open_mfdataset_refuses_bad_arguments(tiles):
    store, _files = tiles
    with pytest.raises(ValueError, match="combine must be one of"):
        store.open_mfdataset(["t0x0"], combine="by_name")
    with pytest.raises(ValueError, match="concat_dim"):
        store.open_mfdataset(["t0x0"], concat_dim="time")
    with pytest.raises(TypeError, match="parallel"):
        store.open_mfdataset(["t0x0"], parallel=True)
    with pytest.raises(TypeError):
        store.open_mfdataset("t0x0")
    with pytest.raises(ValueError, match="empty"):
        store.open_mfdataset([])
