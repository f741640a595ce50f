"""Every feature file also survives the other ways in and out: ingested from a dask-backed
``xr.open_dataset(path, chunks={})`` and read back through ``xr.open_dataset(store,
engine="atlas")``, lazily and loaded."""

from __future__ import annotations

import pytest
import xarray as xr
from fidelity_helpers import assert_faithful
from test_nc_cli import feature_files

import atlas


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    return feature_files(folder)


def test_dask_backed_files_ingest_and_come_back_identical(files, tmp_path):
    store = atlas.Atlas.create(tmp_path / "store")
    for path in files:
        with xr.open_dataset(path, chunks={}) as ds:
            store.add_xr_dataset(ds, path.stem)
    store.flush()
    store = atlas.Atlas.open(tmp_path / "store")
    for path in files:
        with xr.open_dataset(path) as expected:
            assert_faithful(store.to_xarray(path.stem), expected)


def test_files_come_back_identical_through_the_atlas_backend_engine(files, tmp_path):
    with atlas.Atlas.create(tmp_path / "store") as store:
        for path in files:
            with xr.open_dataset(path) as ds:
                store.add_xr_dataset(ds, path.stem)
    for path in files:
        with xr.open_dataset(path) as expected:
            lazy = xr.open_dataset(tmp_path / "store", engine="atlas", group=path.stem)
            assert_faithful(lazy, expected)
            assert_faithful(lazy.load(), expected)


def test_writing_a_dataset_read_from_the_store_gives_the_same_file_as_its_source(files,
                                                                                 tmp_path):
    # the restored .encoding (dtype on disk, packing, units, char dimensions, record
    # dimension) makes xarray write what it writes from the source itself
    with atlas.Atlas.create(tmp_path / "store") as store:
        for path in files:
            with xr.open_dataset(path) as ds:
                store.add_xr_dataset(ds, path.stem)
    for path in files:
        from_store, from_source = tmp_path / "from_store.nc", tmp_path / "from_source.nc"
        store.to_xarray(path.stem).to_netcdf(from_store)
        with xr.open_dataset(path) as ds:
            ds.to_netcdf(from_source)
        with xr.open_dataset(from_store) as got, xr.open_dataset(from_source) as expected:
            assert_faithful(got, expected)
            for name, var in expected.variables.items():
                assert got[name].encoding.get("dtype") == var.encoding.get("dtype"), name
