"""Durability: flush() is the only boundary; commits are whole; writers never overwrite."""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from core_helpers import assert_same, reopen, segment_files, segments_of

import atlas


def _fill_store(store, n_datasets=3, arrays=("a", "b"), seed=0, prefix="ds"):
    """Write n datasets of small arrays; returns {(dataset, array): data}."""
    rng = np.random.default_rng(seed)
    model = {}
    for i in range(n_datasets):
        ds = store.create_dataset(f"{prefix}{i:03d}")
        ds.set_attribute("index", i)
        for name in arrays:
            data = rng.standard_normal((6, 5)).astype(np.float32)
            ds.define_array(name, "float32", dims=["y", "x"], shape=[6, 5], chunk_shape=[4, 4])
            ds.write_array(name, [0, 0], data)
            model[(ds.name, name)] = data
    return model


def _check_model(store, model):
    for (dataset, array), data in model.items():
        assert_same(store.open_dataset(dataset).read_array(array), data)


def test_nothing_is_visible_to_a_fresh_handle_before_flush(store, store_path):
    model = _fill_store(store)
    fresh = reopen(store_path)
    assert fresh.list_datasets() == [] and fresh.list_arrays() == []
    store.flush()
    fresh = reopen(store_path)
    assert fresh.list_datasets() == ["ds000", "ds001", "ds002"]
    _check_model(fresh, model)
    # later changes stay invisible too until the next flush
    store.open_dataset("ds000").write_array("a", [0, 0], np.zeros((6, 5), np.float32))
    store.create_dataset("late")
    fresh = reopen(store_path)
    assert "late" not in fresh.list_datasets()
    _check_model(fresh, model)


def test_with_block_flushes_on_normal_exit(store_path):
    with atlas.Atlas.create(store_path) as store:
        model = _fill_store(store)
    _check_model(reopen(store_path), model)


def test_with_block_that_raises_does_not_flush_and_the_error_propagates(store_path):
    with atlas.Atlas.create(store_path) as store:
        model = _fill_store(store, n_datasets=1)
    with pytest.raises(RuntimeError, match="boom"):
        with reopen(store_path) as store:
            store.create_dataset("half_done")
            store.open_dataset("ds000").write_array("a", [0, 0], np.zeros((6, 5), np.float32))
            store.open_dataset("ds000").set_attribute("index", 99)
            raise RuntimeError("boom")
    back = reopen(store_path)
    assert back.list_datasets() == ["ds000"]
    assert back.open_dataset("ds000").get_attribute("index") == 0
    _check_model(back, model)


def test_many_datasets_then_one_flush_write_one_segment_per_array_name(store, store_path):
    model = _fill_store(store, n_datasets=60, arrays=("temperature", "salinity", "depth"))
    store.flush()
    files = segment_files(store_path)
    assert len(files) == 3 and all(len(segments_of(store_path, a)) == 1
                                   for a in ("depth", "salinity", "temperature"))
    # a second flush touching one array name in many datasets adds exactly one file
    for i in range(0, 60, 3):
        store.open_dataset(f"ds{i:03d}").write_array("salinity", [1, 1],
                                                     np.ones((2, 2), np.float32))
        model[(f"ds{i:03d}", "salinity")][1:3, 1:3] = 1
    store.flush()
    new = sorted(set(segment_files(store_path)) - set(files))
    assert new == segments_of(store_path, "salinity")[1:]
    assert set(files) <= set(segment_files(store_path))
    back = reopen(store_path)
    assert len(back.list_datasets()) == 60
    _check_model(back, model)


def test_data_schema_attributes_and_stats_survive_reopen(store, store_path):
    ds = store.create_dataset("jan_2024")
    ds.define_array("temperature", "float32", dims=["lat", "lon"], shape=[8, 16],
                    chunk_shape=[4, 8], fill_value=float("nan"))
    data = np.full((8, 16), 20.0, np.float32)
    data[0, :3] = np.nan
    ds.write_array("temperature", [0, 0], data)
    ds.set_attribute("month", 1)
    ds.set_attribute("station", "KNMI")
    ds.set_array_attribute("temperature", "units", "C")
    store.flush()
    before = (ds.array_meta("temperature"), ds.array_stats("temperature"), ds.attributes())
    back = reopen(store_path).open_dataset("jan_2024")
    assert_same(back.read_array("temperature"), data)
    meta, stats, attrs = before
    got_meta = back.array_meta("temperature")
    assert np.isnan(got_meta.pop("fill_value")) and np.isnan(meta.pop("fill_value"))
    assert got_meta == meta
    assert back.array_stats("temperature") == stats == {"row_count": 128, "null_count": 3,
                                                         "min": 20.0, "max": 20.0}
    assert back.attributes() == attrs == {"month": 1, "station": "KNMI"}
    assert back.array_attributes("temperature") == {"units": "C"}


def test_flush_without_changes_commits_nothing(store, store_path):
    _fill_store(store)
    store.flush()
    manifest = (store_path / "manifest.atlas").read_bytes()
    files = segment_files(store_path)
    generation = store.generation
    store.flush()
    store.close()
    assert (store_path / "manifest.atlas").read_bytes() == manifest
    assert segment_files(store_path) == files and store.generation == generation


def test_committed_segment_files_are_never_modified_by_later_flushes(store, store_path):
    _fill_store(store)
    store.flush()
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in segment_files(store_path)}
    ds = store.open_dataset("ds001")
    ds.write_array("a", [2, 2], np.zeros((3, 3), np.float32))
    store.delete_dataset("ds002")
    store.flush()
    for path, digest in digests.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_dropping_a_handle_without_flush_abandons_pending_writes(store_path):
    with atlas.Atlas.create(store_path) as store:
        model = _fill_store(store, n_datasets=1)
    committed = segment_files(store_path)
    store = reopen(store_path)
    _fill_store(store, n_datasets=2, seed=1, prefix="lost")
    store.open_dataset("ds000").write_array("a", [0, 0], np.zeros((6, 5), np.float32))
    del store
    gc.collect()
    back = reopen(store_path)
    assert back.list_datasets() == ["ds000"]
    _check_model(back, model)
    assert segment_files(store_path) == committed  # its spill files went with it


def test_a_second_writers_disjoint_changes_merge_and_a_conflicting_one_raises(store,
                                                                              store_path):
    store.flush()
    first = reopen(store_path)
    second = reopen(store_path)
    model = _fill_store(first, n_datasets=2, seed=1)
    first.flush()
    second.create_dataset("newcomer").set_attribute("x", 1)
    second.flush()  # a newer commit, but nothing in common: re-applied on top of it
    back = reopen(store_path)
    assert back.list_datasets() == ["ds000", "ds001", "newcomer"]
    _check_model(back, model)
    third = reopen(store_path)
    back.open_dataset("newcomer").set_attribute("x", 2)
    back.flush()
    third.open_dataset("newcomer").set_attribute("x", 3)
    with pytest.raises(atlas.ConflictError, match="both set attribute 'x' of dataset "
                                                  "'newcomer'") as info:
        third.flush()
    assert isinstance(info.value, RuntimeError)
    again = reopen(store_path)
    assert again.open_dataset("newcomer").get_attribute("x") == 2
    _check_model(again, model)
    assert again.verify().problems == []


def test_readers_keep_the_snapshot_they_opened(store, store_path):
    model = _fill_store(store, n_datasets=1)
    store.flush()
    reader = reopen(store_path)
    store.create_dataset("added")
    store.delete_dataset("ds000")
    store.flush()
    assert reader.list_datasets() == ["ds000"]
    _check_model(reader, model)
    assert reopen(store_path).list_datasets() == ["added"]


def test_delete_dataset_hides_it_at_once_and_after_reopen(store, store_path):
    model = _fill_store(store, n_datasets=3, arrays=("a", "b"))
    store.open_dataset("ds002").define_array("only_here", "int8", dims=["x"], shape=[1])
    store.flush()
    store.delete_dataset("ds002")
    assert store.list_datasets() == ["ds000", "ds001"]
    assert not store.dataset_exists("ds002")
    assert store.list_arrays() == ["a", "b"]  # its arrays leave the store's list
    with pytest.raises(KeyError):
        store.open_dataset("ds002")
    store.flush()
    back = reopen(store_path)
    assert back.list_datasets() == ["ds000", "ds001"] and back.list_arrays() == ["a", "b"]
    del model[("ds002", "a")], model[("ds002", "b")]
    _check_model(back, model)


def test_a_recreated_dataset_starts_empty(store, store_path):
    _fill_store(store, n_datasets=1)
    store.flush()
    store.delete_dataset("ds000")
    ds = store.create_dataset("ds000")
    assert ds.list_arrays() == [] and ds.attributes() == {}
    ds.define_array("a", "float32", dims=["y", "x"], shape=[6, 5], chunk_shape=[4, 4])
    expected = np.zeros((6, 5), np.float32)  # none of the deleted dataset's chunks come back
    assert_same(ds.read_array("a"), expected)
    store.flush()
    back = reopen(store_path).open_dataset("ds000")
    assert_same(back.read_array("a"), expected)
    assert back.array_stats("a")["null_count"] == 30


def test_deleted_pending_writes_never_reach_disk(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("v", "int64", dims=["x"], shape=[4], chunk_shape=[2])
    ds.write_array("v", [1], np.array([5, 6]))
    ds.delete_array("v")
    ds.define_array("v", "int64", dims=["x"], shape=[4], chunk_shape=[2])
    assert_same(ds.read_array("v"), np.zeros(4, np.int64))
    store.flush()
    assert_same(reopen(store_path).open_dataset("d").read_array("v"), np.zeros(4, np.int64))


def test_unreferenced_segment_files_are_ignored_on_open(store, store_path):
    model = _fill_store(store, n_datasets=2)
    store.flush()
    junk = store_path / "segments" / ("00000099-" + "d" * 32 + ".seg")
    junk.write_bytes(b"ATLSEG02 half written by a crashed writer")
    (store_path / "catalog" / ("00000099-" + "e" * 32 + ".cat")).write_bytes(b"\x00" * 100)
    (store_path / "segments" / "ghost").mkdir()
    (store_path / "segments" / "ghost" / "00000001-0.seg").write_bytes(b"\x00" * 100)
    back = reopen(store_path)
    assert back.list_arrays() == ["a", "b"]
    _check_model(back, model)


_MEMORY_SCRIPT = textwrap.dedent("""
    import sys, tracemalloc
    import numpy as np
    import atlas
    from atlas.core._pending import DIRTY_BUDGET

    store = atlas.Atlas.create(sys.argv[1], codec="lz4")
    ds = store.create_dataset("d")
    width = 1 << 15  # rows of 256 KiB
    rows = 4 * DIRTY_BUDGET // (width * 8)
    ds.define_array("whole", "float64", dims=["t", "x"], shape=[rows // 2, width],
                    chunk_shape=[1, width])
    ds.define_array("part", "float64", dims=["t", "x"], shape=[rows, width],
                    chunk_shape=[2, width])
    ds.define_array("warm", "float64", dims=["t", "x"], shape=[2, 2], chunk_shape=[2, 1])
    ds.write_array("warm", [0, 0], np.ones((1, 2)))
    store.flush()  # load numba and the stats kernels before measuring
    row = np.ones((1, width))
    tracemalloc.start()
    for i in range(rows):
        row[0, 0] = i
        if i < rows // 2:
            ds.write_array("whole", [i, 0], row)  # whole chunks: encoded at once
        ds.write_array("part", [i, 0], row)  # half chunks: kept until the budget spills them
    store.flush()
    peak = tracemalloc.get_traced_memory()[1]
    last = ds.read_array("part", [rows - 1, 0], [1, 2])
    assert last.tolist() == [[rows - 1, 1.0]], last
    print(DIRTY_BUDGET, 3 * (rows // 2) * width * 8, peak)
""")


def test_memory_stays_bounded_when_writing_far_more_than_the_dirty_budget(tmp_path):
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    budget, written, peak = map(int, result.stdout.split())
    assert written >= 6 * budget
    assert peak < budget + (16 << 20), f"peak {peak >> 20} MiB for a {budget >> 20} MiB budget"


_CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import atlas

    store = atlas.Atlas.create(sys.argv[1])
    ds = store.create_dataset("kept")
    ds.define_array("v", "int32", dims=["x"], shape=[4], chunk_shape=[2])
    ds.write_array("v", [0], np.arange(4, dtype=np.int32))
    store.flush()
    ds.write_array("v", [0], np.full(4, -7, np.int32))
    store.create_dataset("lost").set_attribute("k", 1)
    store._storage.commit = lambda *args: os._exit(3)  # die after the segments, before the commit
    store.flush()
""")


def test_a_writer_dying_before_its_commit_leaves_the_previous_state(store_path):
    result = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, str(store_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    back = reopen(store_path)
    assert back.list_datasets() == ["kept"]
    assert_same(back.open_dataset("kept").read_array("v"), np.arange(4, dtype=np.int32))
    report = back.verify()
    # the dead writer's segment and catalog part
    assert report.problems == [] and sorted(o.split("/")[0] for o in report.orphans) == [
        "catalog", "segments"]
    back.compact(grace=0)
    assert reopen(store_path).verify().orphans == []
    assert_same(reopen(store_path).open_dataset("kept").read_array("v"),
                np.arange(4, dtype=np.int32))


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.parametrize("failing", [1, 2])
def test_a_failed_fsync_fails_every_publish_of_that_file(store, store_path, monkeypatch,
                                                          failing):
    """flush() fsyncs its segment files early, while it builds the catalog part, then again
    when it publishes them. After an EIO the kernel may drop the pages that failed and a later
    fsync can succeed without them, so a failed fsync (the early one: 1, publish's: 2) must
    fail this flush and every retry, never be swallowed."""
    import errno

    model = _fill_store(store, arrays=("a",))
    store.flush()
    store.create_dataset("new").define_array("a", "float32", ["x"], [4])
    store.open_dataset("new").write_array("a", [0], np.ones(4, np.float32))
    real = os.fsync
    seen: list[str] = []

    def fsync(fd):
        path = _fd_path(fd)
        if path.endswith(".seg"):
            seen.append(path)
            if len(seen) == failing:
                raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    for _attempt in range(3):
        with pytest.raises(OSError, match="Input/output error: fsync of the pending file"):
            store.flush()
    assert len(set(seen)) == 1 and len(seen) == failing
    back = reopen(store_path)  # the committed state is the one before
    assert not back.dataset_exists("new")
    for (name, array), data in model.items():
        assert_same(back.open_dataset(name).read_array(array), data)


def test_a_spill_file_that_cannot_be_opened_early_is_fsynced_by_publish(store, store_path,
                                                                         monkeypatch):
    """Running out of descriptors for the early fsync loses nothing: not an fsync failure."""
    import errno

    store.create_dataset("new").define_array("a", "float32", ["x"], [4])
    store.open_dataset("new").write_array("a", [0], np.ones(4, np.float32))
    real_open, real_fsync = os.open, os.fsync
    opened: list[str] = []
    synced: list[str] = []

    def open_(path, *args, **kwargs):
        if str(path).endswith(".seg") and not opened and kwargs.get("dir_fd") is None:
            opened.append(str(path))
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    def fsync(fd):
        synced.append(_fd_path(fd))
        return real_fsync(fd)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    store.flush()
    assert opened and opened[0] in synced  # publish fsynced the file itself
    np.testing.assert_array_equal(reopen(store_path).open_dataset("new").read_array("a"),
                                  np.ones(4, np.float32))
