"""LocalStorage: bytes by key on a directory, atomic puts, conditional manifest commits."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import atlas
from atlas.storage import LocalStorage, from_description, open_storage
from atlas.storage._local import SMALL_FILE_BYTES


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "root")


def test_put_then_get_returns_the_bytes_and_creates_parent_directories(storage):
    storage.put("a/b/c.bin", b"hello")
    assert storage.get("a/b/c.bin") == b"hello"
    storage.put("a/b/c.bin", b"replaced")
    assert storage.get("a/b/c.bin") == b"replaced"
    assert not [n for n in os.listdir(os.path.join(storage.root, "a", "b")) if ".tmp" in n]


def test_get_of_a_missing_key_raises_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.get("nope")


@pytest.mark.parametrize("size", [200, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1, 3 << 20])
def test_get_range_and_get_ranges_slice_the_value(storage, size):
    # small files are read whole, bigger ones mapped: the same bytes either way
    data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    storage.put("k", data)
    assert bytes(storage.get_range("k", 10, 5, expected_size=size)) == data[10:15]
    got = storage.get_ranges("k", [0, 100, size - 1], [3, 50, 1])
    assert [bytes(g) for g in got] == [data[0:3], data[100:150], data[size - 1 :]]
    assert bytes(storage.get_range("k", size - 7, 7)) == data[-7:]


def test_get_range_with_a_wrong_expected_size_raises_corruption_error(storage):
    storage.put("seg", b"x" * 100)
    with pytest.raises(atlas.CorruptionError, match="100 bytes"):
        storage.get_range("seg", 0, 10, expected_size=120)


def test_os_errors_inside_the_store_name_the_whole_path(storage, monkeypatch):
    """Files are reached through folder descriptors, so the OS names only the last component
    (``Permission denied: 'b'``); the error names the path a user can look at."""
    storage.put("a/b/c.bin", b"x")
    real_open = os.open

    def refuse(path, flags, mode=0o777, *, dir_fd=None):
        if dir_fd is not None and path in ("b", "c.bin"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError) as caught:
        storage.get("a/b/c.bin")
    assert caught.value.filename == os.path.join(storage.root, "a", "b")
    assert str(caught.value) == f"[Errno 13] Permission denied: {caught.value.filename!r}"
    # the file itself, opened inside its folder
    monkeypatch.setattr(os, "open", real_open)
    storage.put("a/c.bin", b"y")
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError) as caught:
        storage.get("a/c.bin")
    assert caught.value.filename == os.path.join(storage.root, "a", "c.bin")


def test_delete_removes_and_a_missing_key_is_not_an_error(storage):
    storage.put("k", b"1")
    storage.delete("k")
    storage.delete("k")
    with pytest.raises(FileNotFoundError):
        storage.get("k")


def test_list_gives_keys_sizes_and_times_under_a_prefix(storage):
    storage.put("segments/a/1.seg", b"12345")
    storage.put("segments/b/2.seg", b"1")
    storage.put("manifest.atlas", b"m")
    listed = storage.list("segments")
    assert [(k, s) for k, s, _ in listed] == [("segments/a/1.seg", 5), ("segments/b/2.seg", 1)]
    assert all(isinstance(t, float) for _, _, t in listed)
    assert {k for k, _, _ in storage.list()} >= {"manifest.atlas", "segments/a/1.seg"}
    assert storage.list("missing") == []


def test_commit_creates_then_replaces_only_from_the_expected_token(storage):
    assert storage.read_manifest("manifest.atlas") is None
    first = storage.commit("manifest.atlas", b"one", None)
    data, token = storage.read_manifest("manifest.atlas")
    assert data == b"one" and token == first
    with pytest.raises(atlas.ConflictError):
        storage.commit("manifest.atlas", b"two", None)  # must not exist any more
    second = storage.commit("manifest.atlas", b"two", first)
    assert second != first
    with pytest.raises(atlas.ConflictError):
        storage.commit("manifest.atlas", b"three", first)  # stale token
    assert storage.get("manifest.atlas") == b"two"


def test_read_only_storage_refuses_writes(tmp_path):
    LocalStorage(tmp_path).put("k", b"v")
    ro = LocalStorage(tmp_path, read_only=True)
    assert ro.get("k") == b"v"
    for attempt in (lambda: ro.put("k", b"w"), lambda: ro.delete("k"),
                    lambda: ro.commit("m", b"x", None), lambda: ro.spill_path("s")):
        with pytest.raises(atlas.ReadOnlyError):
            attempt()
    assert ro.get("k") == b"v"


def test_spill_path_and_publish_make_a_file_readable_under_its_key(storage):
    path = storage.spill_path("segments/v/1.seg")
    with open(path, "wb") as f:
        f.write(b"segment bytes")
    storage.publish("segments/v/1.seg", path)
    assert storage.get("segments/v/1.seg") == b"segment bytes"
    storage.discard("segments/v/1.seg", path)
    storage.discard("segments/v/1.seg", path)  # twice is fine
    assert not os.path.exists(path)


def test_describe_reopens_an_equivalent_backend_and_pickles(storage):
    storage.put("k", b"v")
    again = from_description(pickle.loads(pickle.dumps(storage.describe())))
    assert isinstance(again, LocalStorage) and again.root == storage.root
    assert again.get("k") == b"v"


def test_open_storage_dispatches_local_paths_and_file_urls(tmp_path):
    for location in (tmp_path, str(tmp_path), f"file://{tmp_path}"):
        backend = open_storage(location)
        assert isinstance(backend, LocalStorage) and backend.root == str(tmp_path)
    same = LocalStorage(tmp_path)
    assert open_storage(same) is same
    assert open_storage(tmp_path, read_only=True).read_only


def test_open_storage_rejects_options_for_local_paths_and_unknown_locations(tmp_path):
    with pytest.raises(TypeError):
        open_storage(tmp_path, region="eu-west-1")
    with pytest.raises(TypeError):
        open_storage(42)


def test_a_store_can_live_on_a_storage_object(tmp_path):
    store = atlas.Atlas.create(LocalStorage(tmp_path))
    store.create_dataset("d")
    store.flush()
    assert atlas.Atlas.open(LocalStorage(tmp_path)).list_datasets() == ["d"]
