"""The ``engine="atlas"`` backend (``xr.open_dataset`` / ``xr.open_datatree``) and
``Atlas.to_xarray_many``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import atlas
from atlas.xarray.backend import AtlasBackendEntrypoint


def dataset(seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"temperature": (("time", "lat", "lon"), rng.normal(size=(4, 6, 8)).astype(np.float32),
                         {"units": "K"}),
         "salinity": (("lat", "lon"), rng.normal(35, 1, (6, 8))),
         "station": (("lat",), np.array([f"s{seed}-{i}" for i in range(6)], dtype=object)),
         "depth": ((), float(seed))},
        coords={"time": np.array(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
                                 dtype="datetime64[ns]"),
                "lat": np.linspace(-5, 5, 6), "lon": np.linspace(0, 7, 8)},
        attrs={"seed": seed, "tags": ["a", "b"]})


@pytest.fixture
def store_path(tmp_path):
    with atlas.Atlas.create(tmp_path / "store") as store:
        for seed in range(3):
            store.add_xr_dataset(dataset(seed), f"d{seed}",
                                 chunks={"temperature": [2, 3, 8]})
    return tmp_path / "store"


def test_engine_is_registered_and_recognises_store_directories(store_path, tmp_path):
    assert "atlas" in xr.backends.list_engines()
    entry = AtlasBackendEntrypoint()
    assert entry.guess_can_open(store_path)
    assert entry.guess_can_open(str(store_path))
    assert not entry.guess_can_open(tmp_path)  # a directory without a manifest
    assert not entry.guess_can_open(store_path / "manifest.atlas")
    # no engine given: xarray asks every backend and picks this one
    xr.testing.assert_identical(xr.open_dataset(store_path, group="d1"), dataset(1))


def test_open_dataset_is_lazy_and_identical_to_the_written_dataset(store_path):
    opened = xr.open_dataset(store_path, engine="atlas", group="d2")
    assert not opened["temperature"].variable._in_memory
    assert not opened["salinity"].variable._in_memory
    xr.testing.assert_identical(opened, dataset(2))
    xr.testing.assert_identical(opened, atlas.Atlas.open(store_path).to_xarray("d2"))


def test_preferred_chunks_are_the_on_disk_chunks(store_path):
    opened = xr.open_dataset(store_path, engine="atlas", group="/d0")
    assert opened["temperature"].encoding["preferred_chunks"] == {"time": 2, "lat": 3, "lon": 8}
    assert opened["salinity"].encoding["preferred_chunks"] == {"lat": 6, "lon": 8}
    chunked = xr.open_dataset(store_path, engine="atlas", group="d0", chunks={})
    assert chunked["temperature"].chunks == ((2, 2), (3, 3), (8,))
    xr.testing.assert_identical(chunked.compute(), dataset(0))


@pytest.mark.parametrize("index", [
    {"time": 1, "lat": slice(1, 5), "lon": slice(None, None, 3)},
    {"time": slice(None, None, -1), "lat": -1, "lon": slice(7, 0, -2)},
    {"time": [0, 3], "lat": [5, 1, 2]},
    {"lat": slice(4, 4)},
])
def test_backend_indexing_matches_numpy(store_path, index):
    opened = xr.open_dataset(store_path, engine="atlas", group="d1")
    expected = dataset(1)
    xr.testing.assert_identical(opened.isel(index).load(), expected.isel(index))


def test_open_dataset_needs_a_group_when_the_store_has_several(store_path, tmp_path):
    with pytest.raises(ValueError, match="3 datasets.*d0"):
        xr.open_dataset(store_path, engine="atlas")
    with pytest.raises(KeyError, match="nope"):
        xr.open_dataset(store_path, engine="atlas", group="nope")
    with atlas.Atlas.create(tmp_path / "single") as store:
        store.add_xr_dataset(dataset(5), "only")
    xr.testing.assert_identical(xr.open_dataset(tmp_path / "single", engine="atlas"),
                                dataset(5))


def test_drop_variables_leaves_them_out(store_path):
    opened = xr.open_dataset(store_path, engine="atlas", group="d0",
                             drop_variables=["salinity", "station"])
    xr.testing.assert_identical(opened, dataset(0).drop_vars(["salinity", "station"]))


def test_open_datatree_gives_every_dataset_as_a_group(store_path):
    tree = xr.open_datatree(store_path, engine="atlas")
    assert sorted(tree.children) == ["d0", "d1", "d2"]
    assert not tree["d1"]["temperature"].variable._in_memory
    for seed in range(3):
        xr.testing.assert_identical(tree[f"d{seed}"].to_dataset(), dataset(seed))


def test_to_xarray_many_stacks_data_variables_along_a_new_dimension(store_path, monkeypatch):
    calls = []
    original = atlas.Atlas.read_array_across_stacked

    def spy(self, array, names, *args, **kwargs):
        calls.append(array)
        return original(self, array, names, *args, **kwargs)

    monkeypatch.setattr(atlas.Atlas, "read_array_across_stacked", spy)
    names = ["d2", "d0", "d1"]
    many = atlas.Atlas.open(store_path).to_xarray_many(names)
    assert calls == []  # lazy: nothing read before compute
    many = many.compute()
    expected = xr.concat([dataset(int(n[1])) for n in names], dim="dataset",
                         data_vars="all", coords="minimal", compat="override",
                         join="override", combine_attrs="override")
    expected = expected.assign_coords(dataset=np.array(names, dtype=object))
    xr.testing.assert_identical(many, expected)
    assert many.attrs == dataset(2).attrs
    # one stacked read per stored chunk: temperature has 2 x 2 chunks of (2, 3, 8)
    assert sorted(calls) == sorted(["temperature"] * 4 + ["salinity", "station", "depth"])
    # the later name, and a custom dimension
    alias = atlas.Atlas.open(store_path).open_as_many_xarray_dataset(names[:2], concat_dim="run")
    assert alias["temperature"].dims == ("run", "time", "lat", "lon")
    assert alias["run"].values.tolist() == names[:2]


def test_to_xarray_many_rejects_bad_input(store_path):
    store = atlas.Atlas.open(store_path)
    with pytest.raises(TypeError):
        store.to_xarray_many("d0")
    with pytest.raises(ValueError, match="empty"):
        store.to_xarray_many([])
    with pytest.raises(ValueError, match="'lat'"):
        store.to_xarray_many(["d0"], concat_dim="lat")
