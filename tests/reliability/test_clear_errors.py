"""Clear, typed errors instead of late or raw ones (item 10 of issue 17, outside the format).

Before the fix: array names of 256 characters passed ``define_array`` and failed later with a
raw ENAMETOOLONG on local stores only (names are limited to 255 bytes of UTF-8 now; since format
version 2 they are no file names, so 43 x "é" is a valid name); attribute keys and values with lone
surrogates were accepted and broke ``atlas show``; ``set_attribute(1e300, dtype="float32")``
stored inf; a handle reading after compaction's grace got a bare FileNotFoundError (or kept
reading deleted files through its mmaps, pinning their disk space); a read-only file system
raised a raw OSError (EROFS)."""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
from collections import Counter
from contextlib import redirect_stdout

import numpy as np
import pytest

import atlas
from atlas.cli import main as cli_main
from atlas.storage import _local

from ._harness import record

SEEN: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if SEEN:
        record("clear-errors", checks=sum(SEEN.values()), outcomes=dict(sorted(SEEN.items())))


def _locations(tmp_path):
    from obstore.store import MemoryStore

    return {"local": tmp_path / "store", "object": MemoryStore()}


def _fill(store, names=("d0", "d1"), flushes=2) -> None:
    for name in names:
        ds = store.create_dataset(name)
        ds.define_array("a", "float64", ["x"], [8], [4])
    for f in range(flushes):
        for i, name in enumerate(names):
            store.open_dataset(name).write_array("a", [4 * (f % 2)], np.full(4, 10.0 * i + f))
        store.flush()


# -- names ----------------------------------------------------------------------------------------


TOO_LONG = ("x" * 256, "é" * 128, "%" * 256, "\U0001F600" * 64)  # 256 bytes of UTF-8 each
LONGEST = ("x" * 255, "é" * 127 + "x", "~" * 255, "%" * 255, "\U0001F600" * 63 + "xyz",
           "é" * 43)  # 255 bytes (and 43 x "é", refused while names were folder names)


@pytest.mark.parametrize("backend", ["local", "object"])
def test_one_name_length_limit_for_every_backend_enforced_up_front(tmp_path, backend):
    """Names are at most 255 bytes of UTF-8 on every backend (format version 2 keeps them out
    of file names; they still go into netCDF files and the catalog)."""
    store = atlas.Atlas.create(_locations(tmp_path)[backend])
    ds = store.create_dataset("d")
    for name in TOO_LONG:
        with pytest.raises(atlas.InvalidNameError, match="255"):
            store.create_dataset(name)
        with pytest.raises(atlas.InvalidNameError, match="255"):
            ds.define_array(name, "int8", ["x"], [2])
        SEEN[f"long name refused ({backend})"] += 1
    for name in LONGEST:  # the longest names work all the way
        ds.define_array(name, "int8", ["x"], [4], [2])
        ds.write_array(name, [0], np.arange(4, dtype=np.int8))
        store.create_dataset(name).set_attribute("k", 1)
    store.flush()
    store.compact(grace=0)
    back = atlas.Atlas.open(store._storage)
    for name in LONGEST:
        assert back.open_dataset("d").read_array(name).tolist() == [0, 1, 2, 3]
        assert back.open_dataset(name).get_attribute("k") == 1
    assert set(back.list_datasets()) == {"d", *LONGEST}
    assert back.verify().ok
    SEEN[f"longest names work ({backend})"] += len(LONGEST)


# -- attributes -----------------------------------------------------------------------------------


def test_lone_surrogates_are_refused_in_attribute_keys_values_and_dims(tmp_path):
    store = atlas.Atlas.create(tmp_path / "store")
    _fill(store, flushes=1)
    ds = store.open_dataset("d0")
    before = (ds.attributes(), ds.array_attributes("a"), ds.list_arrays())
    for call in (lambda: ds.set_attribute("k\ud800", 1),
                 lambda: ds.set_attribute("k", "v\udfff"),
                 lambda: ds.set_attribute("k", "v\ud800", dtype="string"),
                 lambda: ds.set_array_attribute("a", "\udc00", 1.0),
                 lambda: ds.set_array_attribute("a", "k", "\ud800x"),
                 lambda: ds.define_array("b", "int8", ["x\ud800"], [2])):
        with pytest.raises(ValueError, match="not valid Unicode"):
            call()
        SEEN["surrogate refused"] += 1
    assert (ds.attributes(), ds.array_attributes("a"), ds.list_arrays()) == before
    store.flush()
    with redirect_stdout(io.StringIO()):
        assert cli_main(["show", str(tmp_path / "store"), "d0"]) == 0


@pytest.mark.parametrize("value,dtype", [(1e300, "float32"), (-1e39, "float32"),
                                         (np.float64(1e5), "float16"), (10**39, "float32")])
def test_a_float_attribute_that_does_not_fit_its_dtype_is_refused_not_stored_as_inf(
        tmp_path, value, dtype):
    store = atlas.Atlas.create(tmp_path / "store")
    ds = store.create_dataset("d")
    with pytest.raises(OverflowError, match=dtype):
        ds.set_attribute("k", value, dtype=dtype)
    assert ds.attributes() == {}
    ds.set_attribute("inf", float("inf"), dtype=dtype)  # inf itself is a value, kept
    assert np.isinf(ds.get_attribute("inf"))
    SEEN["float overflow refused"] += 1


# -- reads after compaction's grace ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "object"])
@pytest.mark.parametrize("read_before", [False, True])
def test_a_read_after_the_grace_deleted_its_files_says_to_reopen(tmp_path, monkeypatch,
                                                                 backend, read_before):
    """A compaction with grace 0 deletes the catalog parts and segments it replaced. A handle
    that had not read the catalog finds its parts gone; one that had (footers cached, local
    files mapped, the first chunk's block decoded) finds the second chunk's segment gone."""
    monkeypatch.setattr(_local, "MAP_CHECK_SECONDS", 0.0)
    location = _locations(tmp_path)[backend]
    _fill(atlas.Atlas.create(location))
    reader = atlas.Atlas.open(location)
    if read_before:
        assert reader.open_dataset("d1").read_array("a", [0], [4]).tolist() == [10.0] * 4
    atlas.Atlas.open(location).compact(grace=0)
    with pytest.raises(atlas.StaleHandleError, match="reopen") as err:
        reader.open_dataset("d1").read_array("a")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value,
                                                                  atlas.CorruptionError)
    gone = "segments/" if read_before else "catalog/"
    assert gone in str(err.value), err.value
    assert atlas.Atlas.open(location).open_dataset("d1").read_array("a").tolist() == \
        [10.0] * 4 + [11.0] * 4
    SEEN[f"stale read ({backend}, {'segment' if read_before else 'part'})"] += 1


def _deleted_mappings(root) -> list[str]:
    with open("/proc/self/maps") as maps:
        return [line for line in maps if str(root) in line and "(deleted)" in line]


@pytest.mark.parametrize("mapped", [True, False])
def test_a_handle_drops_mappings_of_deleted_files(tmp_path, monkeypatch, mapped):
    monkeypatch.setattr(_local, "MAP_CHECK_SECONDS", 0.0)
    if mapped:  # these small files are read whole otherwise: map them, as big ones are
        monkeypatch.setattr(_local, "SMALL_FILE_BYTES", 0)
    root = tmp_path / "store"
    _fill(atlas.Atlas.create(root), flushes=3)  # a writer gone (it maps the files it read too)
    reader = atlas.Atlas.open(root)
    reader.open_dataset("d0").read_array("a", [0], [4])
    reader.read_array_across_stacked("a", ["d0", "d1"], [0], [4])
    maps = [line for line in open("/proc/self/maps") if str(root) in line]
    assert (any("catalog/" in line for line in maps) and any("segments/" in line
                                                             for line in maps)) == mapped
    atlas.Atlas.open(root).compact(grace=0)
    with pytest.raises(atlas.StaleHandleError):
        reader.open_dataset("d0").read_array("a")
    gc.collect()
    assert _deleted_mappings(root) == []
    SEEN["deleted mappings dropped"] += 1


# -- read-only file systems -----------------------------------------------------------------------


@contextlib.contextmanager
def read_only_filesystem(monkeypatch):
    """Every call that would write to a file system fails with EROFS, as on a read-only mount
    (reads still work)."""
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    real_open = os.open

    def erofs(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def open_(path, flags, *args, **kwargs):
        if flags & writes:
            erofs()
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "open", open_)
        for name in ("mkdir", "unlink", "remove", "rename", "replace", "rmdir"):
            m.setattr(os, name, erofs)
        yield


def test_a_read_only_file_system_raises_read_only_error_and_changes_nothing(tmp_path,
                                                                           monkeypatch):
    root = tmp_path / "store"
    store = atlas.Atlas.create(root)
    _fill(store)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    calls = {
        "create": lambda s: atlas.Atlas.create(tmp_path / "new"),
        "write_array": lambda s: s.open_dataset("d0").write_array("a", [0], np.zeros(4)),
        "flush": lambda s: (s.open_dataset("d0").set_attribute("k", 1), s.flush()),
        "delete and flush": lambda s: (s.delete_dataset("d1"), s.flush()),
        "compact": lambda s: s.compact(grace=0),
    }
    for what, call in calls.items():
        handle = atlas.Atlas.open(root)
        with read_only_filesystem(monkeypatch):
            assert handle.open_dataset("d1").read_array("a")[0] == 10.0  # reads work
            with pytest.raises(atlas.ReadOnlyError, match="read-only file system"):
                call(handle)
        SEEN[f"EROFS as ReadOnlyError: {what}"] += 1
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert atlas.Atlas.open(root).verify().ok
