"""Drifting collections: files whose dimension lengths, variable sets and string widths differ
go into one store side by side; stacked reads work over what they share with one shape and
otherwise name the first dataset that does not fit."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fidelity_helpers import FLAVOURS, Var, assert_faithful, chars, write_nc

import atlas
from atlas.errors import ArrayNotFoundError

# name: (profile length, station name, extra variable?, salinity dtype)
DRIFT = {
    "a": (10, b"ARGO-1", False, "f4"),
    "b": (10, b"GLIDER-22", True, "f4"),
    "c": (12, b"SHIP", False, "f4"),
    "d": (10, b"ARGO-2", False, "f8"),
}


def drifting_file(path, flavour, name):
    n, station, extra, sal_dtype = DRIFT[name]
    rng = np.random.default_rng(len(path.name) + n)
    variables = [
        Var("depth", "f4", ("depth",), np.arange(n, dtype="f4") * 10, {"units": "m"}),
        Var("temp", "f4", ("depth",), rng.normal(10, 2, n).astype("f4"), {"units": "degC"}),
        Var("sal", sal_dtype, ("depth",), rng.normal(35, 1, n).astype(sal_dtype),
            {"units": "psu"}),
        Var("station", "S1", ("strlen",), chars([station], len(station))[0]),
        Var("lat", "f8", (), np.float64(50.0 + n), {"units": "degrees_north"}),
    ]
    if extra:
        variables.append(Var("oxygen", "f4", ("depth",), rng.normal(250, 5, n).astype("f4"),
                             fill=np.float32(-999)))
    return write_nc(path, flavour, {"depth": n, "strlen": len(station)}, variables,
                    {"platform": station.decode()})


@pytest.fixture(params=FLAVOURS)
def collection(request, tmp_path):
    """(store with every file of DRIFT ingested and flushed, {name: the file opened})"""
    store = atlas.Atlas.create(tmp_path / "store")
    opened = {}
    for name in DRIFT:
        path = tmp_path / f"{name}.nc"
        kw = drifting_file(path, request.param, name)
        with xr.open_dataset(path, **kw) as ds:
            opened[name] = ds.load()
        store.add_xr_dataset(opened[name], name)
    store.flush()
    return atlas.Atlas.open(tmp_path / "store"), opened


def test_every_drifting_file_comes_back_identical(collection):
    store, opened = collection
    for name, ds in opened.items():
        assert_faithful(store.to_xarray(name), ds)


def test_stacked_reads_over_shared_same_shape_variables_work(collection):
    store, opened = collection
    names = ["a", "b", "d"]
    np.testing.assert_array_equal(store.read_array_across_stacked("temp", names),
                                  np.stack([opened[n]["temp"].values for n in names]))
    # strings of different widths stack as text
    stations = store.read_array_across_stacked("station", ["a", "b", "c", "d"])
    assert stations.tolist() == [opened[n]["station"].values.item().decode() for n in "abcd"]
    # a window every dataset has works across different lengths
    window = store.read_array_across_stacked("temp", ["a", "c"], start=[2], shape=[5])
    np.testing.assert_array_equal(window, np.stack([opened[n]["temp"].values[2:7]
                                                    for n in ("a", "c")]))
    stacked = store.to_xarray_many(["a", "b"])
    np.testing.assert_array_equal(stacked["sal"].values,
                                  np.stack([opened[n]["sal"].values for n in ("a", "b")]))


@pytest.mark.parametrize("array, names, culprit", [
    ("temp", ["a", "b", "c"], "c"),  # a different length
    ("temp", ["a", "c", "b", "c"], "c"),
    ("temp", ["c", "a"], "a"),  # relative to the first dataset
    ("sal", ["a", "b", "d"], "d"),  # a different dtype
])
def test_stacked_reads_over_mismatching_shapes_name_the_first_misfit(collection, array,
                                                                     names, culprit):
    store, _ = collection
    with pytest.raises(ValueError, match=f"dataset '{culprit}'"):
        store.read_array_across_stacked(array, names)


def test_stacked_reads_of_a_variable_some_files_lack_name_the_first_without_it(collection):
    store, _ = collection
    with pytest.raises(ArrayNotFoundError, match="'a'"):
        store.read_array_across_stacked("oxygen", ["b", "a", "c"])
    assert store.read_array_across("oxygen", ["a", "b"])[0] is None
