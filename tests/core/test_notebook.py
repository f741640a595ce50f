"""What a notebook user gets from a store: ``store[name]``, ``name in store``, ``len``,
iteration, and the HTML views of ``Atlas`` and ``DatasetView``; internal attributes hidden."""

from __future__ import annotations

import numpy as np
import pytest

from atlas.core import _html


def filled(store, names=("jan", "feb", "mar")):
    for i, name in enumerate(names):
        ds = store.create_dataset(name)
        ds.define_array("sst", "float32", ["lat", "lon"], [4, 6], [2, 3], float("nan"))
        ds.write_array("sst", [0, 0], np.full((4, 6), 10.0 + i, np.float32))
        ds.define_array("station", "string", ["n"], [2])
        ds.set_attribute("month", i + 1)
        ds.set_attribute("note", "<b>raw & html</b>")
        ds._set_attribute("_pyatlas_coords", '["lat"]')  # the xarray layer's bookkeeping
        ds.set_array_attribute("sst", "units", "degC")
        ds._set_array_attribute("sst", "_pyatlas_dtype", "float32")
    store.flush()
    return store


def test_the_store_acts_as_a_mapping_of_dataset_names(store):
    filled(store)
    assert list(store) == store.list_datasets() == ["jan", "feb", "mar"]
    assert len(store) == 3 and "feb" in store and "apr" not in store and 7 not in store
    assert store["feb"].name == "feb"
    assert store["feb"].read_array("sst")[0, 0] == 11.0
    with pytest.raises(KeyError, match="apr"):
        store["apr"]


def test_internal_attributes_are_hidden_but_readable_by_the_xarray_layer(store):
    view = filled(store)["jan"]
    assert view.attributes() == {"month": 1, "note": "<b>raw & html</b>"}
    assert view.get_attribute("_pyatlas_coords") is None
    assert view._all_attributes()["_pyatlas_coords"] == '["lat"]'
    assert view.array_attributes("sst") == {"units": "degC"}
    assert view.get_array_attribute("sst", "_pyatlas_dtype") is None
    assert view._all_array_attributes("sst")["_pyatlas_dtype"] == "float32"
    # the public setters refuse them: set, they would be stored and never seen again
    with pytest.raises(ValueError, match="'_pyatlas_x' of dataset 'jan': keys beginning "
                                         "with '_pyatlas' are reserved"):
        view.set_attribute("_pyatlas_x", 1)
    with pytest.raises(ValueError, match="'_pyatlas_dtype' of 'sst' in dataset 'jan'"):
        view.set_array_attribute("sst", "_pyatlas_dtype", "int8")
    assert view._all_array_attributes("sst")["_pyatlas_dtype"] == "float32"


def test_the_store_html_names_datasets_arrays_sizes_codec_and_generation(store):
    page = filled(store)._repr_html_()
    for text in ("atlas.Atlas", "zstd", f"generation {store.generation}", "3 datasets",
                 "sst", "float32", "4 x 6", "2 x 3", "72", "station", "string", "jan", "mar"):
        assert text in page, text


def test_a_big_store_html_is_a_summary(store, monkeypatch):
    filled(store, [f"d{i}" for i in range(7)])
    monkeypatch.setattr(_html, "SHOW_NAMES", 3)
    monkeypatch.setattr(_html, "SCAN_DATASETS", 2)
    page = store._repr_html_()
    assert "d2" in page and "d3" not in page and "4 more" in page
    assert "first 2 datasets" in page


def test_the_dataset_html_shows_arrays_stats_and_escaped_attributes(store):
    page = filled(store)["feb"]._repr_html_()
    for text in ("atlas.DatasetView", "feb", "sst", "float32", "lat: 4, lon: 6", "2 x 3",
                 "nan", "nulls 0/24", "min 11.0", "station", "month", "&lt;b&gt;raw &amp; html"):
        assert text in page, text
    assert "<b>raw" not in page and "_pyatlas" not in page
