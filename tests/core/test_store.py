"""Atlas handles: creating and opening stores, the dataset registry, names and errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from core_helpers import assert_same, reopen

import atlas
from atlas.storage import LocalStorage

BAD_NAMES = ["", "a/b", "/", "_private", "_", ".", "..", "tab\there"]


def test_create_on_a_missing_nested_path_creates_the_directory(tmp_path):
    path = tmp_path / "does" / "not" / "exist"
    store = atlas.Atlas.create(path)
    assert path.is_dir()
    assert atlas.Atlas.open(path).list_datasets() == []
    assert store.list_datasets() == []


def test_create_accepts_str_and_pathlike_locations(tmp_path):
    atlas.Atlas.create(str(tmp_path / "a"))
    atlas.Atlas.create(tmp_path / "b")
    assert atlas.Atlas.open(str(tmp_path / "b")).list_datasets() == []


def test_create_on_an_existing_store_raises_file_exists_error(store_path):
    atlas.Atlas.create(store_path)
    with pytest.raises(FileExistsError):
        atlas.Atlas.create(store_path)


def test_create_in_an_existing_empty_directory_works(tmp_path):
    atlas.Atlas.create(tmp_path)
    assert atlas.Atlas.open(tmp_path).list_datasets() == []


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "other_files", "regular_file"])
def test_open_of_anything_that_is_not_a_store_raises_store_not_found(tmp_path, kind):
    path = tmp_path / "target"
    if kind == "empty_dir":
        path.mkdir()
    elif kind == "other_files":
        path.mkdir()
        (path / "data.nc").write_bytes(b"CDF\x01")
        (path / "segments").mkdir()
    elif kind == "regular_file":
        path.write_bytes(b"not a store")
    with pytest.raises(atlas.StoreNotFoundError) as info:
        atlas.Atlas.open(path)
    assert isinstance(info.value, FileNotFoundError)
    assert str(path) in str(info.value)


def test_open_of_a_manifest_that_is_not_atlas_raises_format_error(tmp_path):
    (tmp_path / "manifest.atlas").write_bytes(b"{\"hello\": 1}")
    with pytest.raises(atlas.FormatError):
        atlas.Atlas.open(tmp_path)


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_every_codec_round_trips_and_reopen_detects_it(store_path, rng, codec):
    data = rng.standard_normal((20, 30))
    with atlas.Atlas.create(store_path, codec=codec) as store:
        ds = store.create_dataset("d")
        ds.define_array("v", "float64", dims=["y", "x"], shape=[20, 30], chunk_shape=[8, 8])
        ds.write_array("v", [0, 0], data)
    back = reopen(store_path)
    assert back.codec == codec
    assert_same(back.open_dataset("d").read_array("v"), data)


def test_unknown_codec_raises_value_error_and_creates_nothing(store_path):
    with pytest.raises(ValueError, match="zstd"):
        atlas.Atlas.create(store_path, codec="gzip")
    with pytest.raises(atlas.StoreNotFoundError):
        atlas.Atlas.open(store_path)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_dataset_names_are_rejected(store, name):
    with pytest.raises(atlas.InvalidNameError) as info:
        store.create_dataset(name)
    assert isinstance(info.value, ValueError)
    assert store.list_datasets() == []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_array_names_are_rejected(store, name):
    ds = store.create_dataset("d")
    with pytest.raises(ValueError):
        ds.define_array(name, "int8", dims=["x"], shape=[2])
    assert ds.list_arrays() == []


@pytest.mark.parametrize("name", [1, None, b"bytes"])
def test_non_str_names_raise_type_error(store, name):
    with pytest.raises(TypeError):
        store.create_dataset(name)


@pytest.mark.parametrize("name", ["a", "jan_2024", "x.y", "...", "a b", "ünï", "a_", "9"])
def test_ordinary_names_are_accepted_and_survive_reopen(store, store_path, name):
    ds = store.create_dataset(name)
    ds.define_array(name, "int8", dims=["x"], shape=[1])
    store.flush()
    back = reopen(store_path)
    assert back.list_datasets() == [name]
    assert back.open_dataset(name).list_arrays() == [name]


def test_duplicate_live_dataset_raises_file_exists_error(store):
    store.create_dataset("d")
    with pytest.raises(FileExistsError, match="'d'"):
        store.create_dataset("d")
    store.flush()
    with pytest.raises(atlas.AlreadyExistsError):
        store.create_dataset("d")


def test_a_create_that_loses_the_race_to_another_raises_already_exists(store_path,
                                                                         monkeypatch):
    """Two creates of one new store: the one whose check passed before the other committed
    raised ConflictError ('committed by another writer ... redo the changes')."""
    first = atlas.Atlas.create(store_path)
    first.create_dataset("kept")
    first.flush()
    real, calls = LocalStorage.read_manifest, []

    def not_there_yet(self, key):  # the check before the other create committed
        calls.append(key)
        return None if len(calls) == 1 else real(self, key)

    monkeypatch.setattr(LocalStorage, "read_manifest", not_there_yet)
    with pytest.raises(atlas.AlreadyExistsError, match="a store already exists"):
        atlas.Atlas.create(store_path)
    monkeypatch.undo()
    assert atlas.Atlas.open(store_path).list_datasets() == ["kept"]


def test_duplicate_live_array_raises_file_exists_error(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int8", dims=["x"], shape=[2])
    with pytest.raises(FileExistsError, match="'v'"):
        ds.define_array("v", "int8", dims=["x"], shape=[2])
    with pytest.raises(FileExistsError):
        ds.define_array("v", "float64", dims=["y"], shape=[3])
    assert ds.array_meta("v")["dtype"] == "int8"


def test_arrays_of_up_to_63_dimensions_are_defined_and_read_back(store):
    """64 dimensions (numpy's most) were defined, written and committed, and every read then
    failed: a read allocates one axis more."""
    view = store.create_dataset("d")
    view.define_array("deep", "int8", [f"d{i}" for i in range(63)], [1] * 63)
    view.write_array("deep", [0] * 63, np.full([1] * 63, 5, np.int8))
    store.flush()
    assert view.read_array("deep").shape == (1,) * 63
    assert store.read_array_across_stacked("deep", ["d"]).reshape(-1).tolist() == [5]
    with pytest.raises(ValueError, match="64 dimensions; at most 63"):
        view.define_array("deeper", "int8", [f"d{i}" for i in range(64)], [1] * 64)
    assert view.list_arrays() == ["deep"]


def test_the_same_array_name_may_exist_in_many_datasets(store):
    for name in ("a", "b"):
        store.create_dataset(name).define_array("v", "int8", dims=["x"], shape=[2])
    assert store.list_arrays() == ["v"]


def test_missing_datasets_raise_key_error_on_open_and_delete(store):
    with pytest.raises(KeyError, match="'nope'"):
        store.open_dataset("nope")
    with pytest.raises(atlas.DatasetNotFoundError):
        store.delete_dataset("nope")
    assert not store.dataset_exists("nope")
    assert "nope" not in store


def test_missing_array_raises_key_error_on_delete(store):
    ds = store.create_dataset("d")
    with pytest.raises(atlas.ArrayNotFoundError) as info:
        ds.delete_array("nope")
    assert isinstance(info.value, KeyError)
    assert "'nope'" in str(info.value) and "'d'" in str(info.value)


def test_dataset_exists_and_membership_follow_create_and_delete(store):
    assert not store.dataset_exists("d") and len(store) == 0
    store.create_dataset("d")
    assert store.dataset_exists("d") and "d" in store and len(store) == 1
    store.delete_dataset("d")
    assert not store.dataset_exists("d") and "d" not in store and len(store) == 0


def test_list_datasets_is_in_creation_order(store, store_path):
    names = ["zulu", "alpha", "mike", "bravo", "b10", "b9"]
    for name in names:
        store.create_dataset(name)
    assert store.list_datasets() == names
    store.flush()
    assert reopen(store_path).list_datasets() == names


def test_list_arrays_is_the_sorted_distinct_set_over_live_datasets(store, store_path):
    layout = {"one": ["temp", "salt"], "two": ["salt", "depth"], "three": ["zeta"]}
    for dataset, arrays in layout.items():
        ds = store.create_dataset(dataset)
        for array in arrays:
            ds.define_array(array, "float32", dims=["x"], shape=[1])
    assert store.list_arrays() == ["depth", "salt", "temp", "zeta"]
    store.delete_dataset("three")
    store.open_dataset("one").delete_array("temp")
    assert store.list_arrays() == ["depth", "salt"]
    store.flush()
    assert reopen(store_path).list_arrays() == ["depth", "salt"]


def test_dataset_view_lists_its_own_arrays_in_definition_order(store):
    ds = store.create_dataset("d")
    for name in ("c", "a", "b"):
        ds.define_array(name, "int8", dims=["x"], shape=[1])
    assert ds.name == "d"
    assert ds.list_arrays() == ["c", "a", "b"]
    ds.delete_array("a")
    assert ds.list_arrays() == ["c", "b"]


def test_array_meta_describes_the_schema(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("v", "f32", dims=["lat", "lon"], shape=[8, 16], chunk_shape=[4, 8],
                    fill_value=float("nan"))
    ds.define_array("w", "int16", dims=("t",), shape=(5,))
    store.flush()
    back = reopen(store_path).open_dataset("d")
    meta = back.array_meta("v")
    assert {k: meta[k] for k in ("dtype", "shape", "chunk_shape", "dimension_names")} == {
        "dtype": "float32", "shape": [8, 16], "chunk_shape": [4, 8],
        "dimension_names": ["lat", "lon"]}
    assert np.isnan(meta["fill_value"])
    assert back.array_meta("w") == {"dtype": "int16", "shape": [5], "chunk_shape": [5],
                                    "dimension_names": ["t"], "fill_value": None}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"dims": ["x"], "shape": [2, 2]}, ValueError),
     ({"dims": ["x", "y"], "shape": [2, 2], "chunk_shape": [2]}, ValueError),
     ({"dims": ["x"], "shape": [4], "chunk_shape": [0]}, ValueError),
     ({"dims": ["x"], "shape": [-1]}, ValueError),
     ({"dims": ["x"], "shape": [2.5]}, TypeError),
     ({"dims": [""], "shape": [2]}, TypeError),
     ({"dims": [1], "shape": [2]}, TypeError)],
)
def test_inconsistent_array_definitions_are_rejected(store, kwargs, error):
    ds = store.create_dataset("d")
    with pytest.raises(error):
        ds.define_array("v", "int8", **kwargs)
    assert ds.list_arrays() == []


def test_operations_on_a_deleted_dataset_view_raise_key_error(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int8", dims=["x"], shape=[2])
    store.delete_dataset("d")
    with pytest.raises(KeyError):
        ds.read_array("v")
    with pytest.raises(KeyError):
        ds.define_array("w", "int8", dims=["x"], shape=[2])
    with pytest.raises(KeyError):
        ds.set_attribute("a", 1)


def test_read_only_handles_read_but_refuse_every_change(store_path, rng):
    data = rng.standard_normal(4)
    with atlas.Atlas.create(store_path) as store:
        ds = store.create_dataset("d")
        ds.define_array("v", "float64", dims=["x"], shape=[4])
        ds.write_array("v", [0], data)
    ro = atlas.Atlas.open(store_path, read_only=True)
    ds = ro.open_dataset("d")
    assert_same(ds.read_array("v"), data)
    attempts = [lambda: ro.create_dataset("e"), lambda: ro.delete_dataset("d"),
                lambda: ds.write_array("v", [0], data), lambda: ds.set_attribute("k", 1),
                lambda: ds.define_array("w", "int8", dims=["x"], shape=[1]),
                lambda: ds.delete_array("v")]
    for attempt in attempts:
        with pytest.raises(atlas.ReadOnlyError) as info:
            attempt()
        assert isinstance(info.value, PermissionError)
    ro.flush()  # nothing changed: a no-op, not an error
    assert reopen(store_path).list_datasets() == ["d"]


def test_handles_and_views_pickle_and_read_the_same_data(store, store_path, rng):
    data = rng.standard_normal((3, 4))
    ds = store.create_dataset("d")
    ds.define_array("v", "float64", dims=["y", "x"], shape=[3, 4], chunk_shape=[2, 2])
    ds.write_array("v", [0, 0], data)
    store.flush()
    store2 = pickle.loads(pickle.dumps(store))
    assert store2.list_datasets() == ["d"]
    view = pickle.loads(pickle.dumps(ds))
    assert view.name == "d"
    assert_same(view.read_array("v"), data)


def test_close_is_an_alias_for_flush(store, store_path):
    store.create_dataset("d")
    store.close()
    assert reopen(store_path).list_datasets() == ["d"]


def test_a_flush_writes_only_what_changed_and_keeps_the_other_stats(store, store_path):
    for i in range(30):
        ds = store.create_dataset(f"d{i:02d}")
        ds.define_array("v", "int32", ["x"], [4])
        ds.write_array("v", [0], np.arange(4, dtype=np.int32) + i)
    store.flush()
    writer = reopen(store_path)
    writer.open_dataset("d07").write_array("v", [1], np.array([100], np.int32))
    writer.flush()
    new_part = writer._root.parts[-1]
    assert len(writer._root.parts) == 2
    footer = writer._files.footer(new_part, b"ATLCAT02")
    assert set(footer.sections) == {("array", "v")}  # one table, one row: the changed dataset
    assert footer.sections[("array", "v")].rows == 1
    back = reopen(store_path)
    assert back.open_dataset("d07").array_stats("v")["max"] == 100
    for i in (0, 8, 29):
        stats = back.open_dataset(f"d{i:02d}").array_stats("v")
        assert (stats["min"], stats["max"]) == (i, i + 3)
