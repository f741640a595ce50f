"""Property: ``to_xarray_many(join="outer")`` over datasets whose indexed coordinate, length,
dtype and chunking vary gives what ``xr.concat(join="outer")`` gives for the same Datasets."""

from __future__ import annotations

import tempfile

import numpy as np
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import atlas

DTYPES = ["float32", "float64", "int16", "int64", "uint8", "bool", "<U3", "datetime64[ns]"]


def values(rng: np.random.Generator, dtype: str, n: int) -> np.ndarray:
    if dtype == "bool":
        return rng.random(n) < 0.5
    if dtype == "<U3":
        return np.array([f"s{int(v)}" for v in rng.integers(0, 99, n)])
    if dtype.startswith("datetime64"):
        return (np.datetime64("2024-01-01", "ns") + rng.integers(0, 10**6, n).astype(
            "timedelta64[s]")).astype(dtype)
    return rng.integers(0, 100, n).astype(dtype)


@given(data=st.data())
def test_outer_join_of_random_profiles_matches_xr_concat(data):
    dtype = data.draw(st.sampled_from(DTYPES), "dtype")
    members = data.draw(st.lists(st.sets(st.integers(0, 8), min_size=1, max_size=6),
                                 min_size=1, max_size=4), "depth sets")
    chunk = data.draw(st.integers(1, 4), "chunk")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), "seed"))
    datasets = []
    for depths in members:
        depth = np.array(sorted(depths), dtype=np.float64) * 10
        datasets.append(xr.Dataset({"v": ("depth", values(rng, dtype, len(depth)))},
                                   coords={"depth": depth}))
    names = [f"p{i}" for i in range(len(datasets))]
    with tempfile.TemporaryDirectory() as tmp:
        with atlas.Atlas.create(tmp) as store:
            for name, ds in zip(names, datasets):
                store.add_xr_dataset(ds, name, chunks={"v": [chunk]})
        got = atlas.Atlas.open(tmp).to_xarray_many(names, join="outer").compute()
    expected = xr.concat(datasets, dim="dataset", join="outer", data_vars="all",
                         coords="different", compat="equals", combine_attrs="override")
    expected = expected.assign_coords(dataset=np.array(names, dtype=object))
    xr.testing.assert_identical(got, expected)
    assert got["v"].dtype == expected["v"].dtype
