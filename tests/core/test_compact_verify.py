"""compact() keeps every live value and drops dead data; verify() finds damage and orphans;
a checksum mismatch raises CorruptionError naming the file."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest
from core_helpers import assert_same, first_block, reopen, segment_files, segments_of

import atlas
from atlas.format import segment


def _layered_store(store, rng, n_datasets=6, flushes=4):
    """Several flushes of overlapping writes to two arrays; returns the numpy model."""
    model = {}
    for i in range(n_datasets):
        ds = store.create_dataset(f"d{i}")
        ds.define_array("t", "float64", dims=["y", "x"], shape=[7, 9], chunk_shape=[3, 4],
                        fill_value=float("nan"))
        ds.define_array("s", "string", dims=["x"], shape=[5], chunk_shape=[2], fill_value="-")
        model[(ds.name, "t")] = np.full((7, 9), np.nan)
        model[(ds.name, "s")] = np.full(5, "-", dtype=object)
    for _ in range(flushes):
        for i in range(n_datasets):
            ds = store.open_dataset(f"d{i}")
            y, x = int(rng.integers(0, 6)), int(rng.integers(0, 8))
            data = rng.standard_normal((2, 2))
            ds.write_array("t", [y, x], data)
            model[(ds.name, "t")][y:y + 2, x:x + 2] = data
            k = int(rng.integers(0, 5))
            word = np.array([f"w{rng.integers(0, 99)}"], dtype=object)
            ds.write_array("s", [k], word)
            model[(ds.name, "s")][k] = word[0]
        store.flush()
    return model


def _check(store, model):
    for (dataset, array), data in model.items():
        assert_same(store.open_dataset(dataset).read_array(array), data)


def _size(path):
    return sum(p.stat().st_size for p in segment_files(path))


def test_compact_keeps_every_live_value_and_removes_deleted_data(store, store_path, rng):
    model = _layered_store(store, rng)
    for name in ("d1", "d4"):
        store.delete_dataset(name)
        del model[(name, "t")], model[(name, "s")]
    store.open_dataset("d2").delete_array("t")
    del model[("d2", "t")]
    stats = {(d, a): store.open_dataset(d).array_stats(a) for d, a in model}
    store.flush()
    assert store.verify().problems == []
    files_before, size_before = len(segment_files(store_path)), _size(store_path)
    store.compact(grace=0)
    assert len(segment_files(store_path)) == 2 < files_before  # one per array name
    assert _size(store_path) < size_before
    _check(store, model)
    back = reopen(store_path)
    _check(back, model)
    assert {(d, a): back.open_dataset(d).array_stats(a) for d, a in model} == stats
    assert back.verify().problems == [] and back.verify().orphans == []


def test_compact_keeps_replaced_files_for_readers_of_the_previous_manifest(store, store_path,
                                                                           rng):
    model = _layered_store(store, rng, n_datasets=2, flushes=2)
    reader = reopen(store_path)
    store.compact()  # default: replaced files stay for a grace period
    _check(reader, model)
    _check(reopen(store_path), model)
    assert reopen(store_path).verify().problems == []


def test_a_refused_grace_compacts_nothing_and_flushes_nothing(store, store_path, rng):
    _layered_store(store, rng, n_datasets=2, flushes=2)
    store.create_dataset("pending")
    version, files = reopen(store_path).version, segment_files(store_path)
    for grace in (-1, float("inf"), float("nan"), "ten", 3e11):
        with pytest.raises(ValueError, match="grace must be a number of seconds"):
            store.compact(grace=grace)
    assert reopen(store_path).version == version and segment_files(store_path) == files
    assert "pending" not in reopen(store_path) and "pending" in store


def test_compact_flushes_pending_changes_first(store, store_path, rng):
    model = _layered_store(store, rng, n_datasets=2, flushes=1)
    store.open_dataset("d0").write_array("s", [0], np.array(["pending"], dtype=object))
    model[("d0", "s")][0] = "pending"
    store.compact(grace=0)
    _check(reopen(store_path), model)


def test_compact_of_a_compact_store_rewrites_nothing(store, store_path, rng):
    _layered_store(store, rng, n_datasets=2, flushes=2)
    store.compact(grace=0)
    files = {p: p.stat().st_mtime_ns for p in segment_files(store_path)}
    store.compact(grace=0)
    assert {p: p.stat().st_mtime_ns for p in segment_files(store_path)} == files


def test_compact_drops_the_files_of_array_names_no_live_dataset_has(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("gone", "int32", dims=["x"], shape=[3])
    ds.write_array("gone", [0], np.arange(3, dtype=np.int32))
    store.flush()
    ds.delete_array("gone")
    store.compact(grace=0)
    assert segment_files(store_path) == []
    assert reopen(store_path).list_arrays() == []


def _plant_orphan(store_path, age_seconds=0.0):
    path = store_path / "segments" / "00000042-0123456789abcdef0123456789abcdef.seg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(segment.MAGIC + b"left by a crashed flush")
    if age_seconds:
        old = time.time() - age_seconds
        os.utime(path, (old, old))
    return path


def test_verify_lists_orphans_apart_from_problems_and_repair_removes_them(store, store_path,
                                                                         rng):
    model = _layered_store(store, rng, n_datasets=2, flushes=2)
    orphan = _plant_orphan(store_path)
    report = reopen(store_path).verify()
    assert report.problems == [] and report.ok
    assert report.orphans == ["segments/" + orphan.name]
    assert report.segments == 4 and report.chunks > 0
    repaired = reopen(store_path).verify(repair=True)
    assert repaired.removed == report.orphans
    assert not orphan.exists()
    assert reopen(store_path).verify().orphans == []
    _check(reopen(store_path), model)


def test_compact_removes_orphans_left_by_crashed_writers(store, store_path, rng):
    model = _layered_store(store, rng, n_datasets=2, flushes=2)
    orphan = _plant_orphan(store_path, age_seconds=7200)
    store.compact(grace=0)
    assert not orphan.exists()
    _check(reopen(store_path), model)


def test_a_store_kept_inside_another_is_not_swept_as_its_orphans(tmp_path):
    """A store in the outer one's segments/ folder: its segments/<gen>-<hex>.seg are named
    like a format-1 segment of the outer store (segments/<array>/<file>.seg), and the outer
    compact() deleted them as orphans."""
    outer = atlas.Atlas.create(tmp_path / "outer")
    outer.write_array_across_stacked("v", ["a"], np.ones((1, 3)))
    outer.flush()
    inner = atlas.Atlas.create(tmp_path / "outer" / "segments")
    inner.write_array_across_stacked("w", ["b"], np.full((1, 3), 7.0))
    inner.flush()
    report = reopen(tmp_path / "outer").verify(repair=True)
    assert report.orphans == [] and report.removed == []
    reopen(tmp_path / "outer").compact(grace=0)
    back = atlas.Atlas.open(tmp_path / "outer" / "segments")
    assert back.read_array_across_stacked("w").tolist() == [[7.0] * 3] and back.verify().ok
    crashed = tmp_path / "outer" / "segments" / "segments" / f"00000009-{'a' * 32}.seg"
    crashed.write_bytes(b"partial")  # the inner store's own orphans are its own to sweep
    assert reopen(tmp_path / "outer").verify().orphans == []
    assert back.verify().orphans == ["segments/" + crashed.name]


def test_a_live_writers_pending_segment_is_not_taken_for_an_orphan(store, store_path, rng):
    model = _layered_store(store, rng, n_datasets=2, flushes=1)
    writer = reopen(store_path)
    writer.open_dataset("d0").write_array("s", [1], np.array(["in flight"], dtype=object))
    reopen(store_path).verify(repair=True)
    writer.flush()
    model[("d0", "s")][1] = "in flight"
    _check(reopen(store_path), model)


def test_temp_files_of_an_interrupted_commit_are_listed_and_repaired_away(store, store_path,
                                                                          rng, monkeypatch):
    model = _layered_store(store, rng, n_datasets=2, flushes=1)
    writer = reopen(store_path)
    writer.open_dataset("d0").set_attribute("note", "never committed")

    real_replace = os.replace

    def crash(src, dst):  # the process dies between writing the temp file and renaming it
        if str(dst).endswith("manifest.atlas"):
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        writer.flush()
    monkeypatch.undo()
    temps = sorted(p.name for p in store_path.rglob("*.tmp"))
    assert temps and all(t.startswith("manifest") for t in temps)
    # the catalog part the failed flush wrote is an orphan too
    parts = sorted(p.name for p in (store_path / "catalog").iterdir()
                   if p.relative_to(store_path).as_posix() not in reopen(store_path)._root.keys())
    assert len(parts) == 1
    theirs = [store_path / "notes.tmp", store_path / "exports" / "run.nc.tmp"]
    for path in theirs:  # somebody else's temp files in the store folder: not atlas's to delete
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not atlas's")
    report = reopen(store_path).verify()
    assert report.ok and sorted(o.rsplit("/", 1)[-1] for o in report.orphans) == sorted(
        parts + temps)
    # under the commit lock no commit is writing its temp file, so none is a live one; the
    # part stays locked while the writer may still retry its commit
    removed = reopen(store_path).verify(repair=True).removed
    assert sorted(r.rsplit("/", 1)[-1] for r in removed) == temps
    assert sorted(store_path.rglob("*.tmp")) == sorted(theirs)
    del writer
    gc.collect()
    assert [r.rsplit("/", 1)[-1] for r in reopen(store_path).verify(repair=True).removed] == parts
    back = reopen(store_path)
    assert back.open_dataset("d0").get_attribute("note") is None
    _check(back, model)


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_a_flipped_chunk_byte_raises_corruption_error_naming_the_file(store_path, codec):
    with atlas.Atlas.create(store_path, codec=codec) as store:
        ds = store.create_dataset("d")
        ds.define_array("v", "int64", dims=["x"], shape=[8], chunk_shape=[4])
        ds.write_array("v", [0], np.arange(8))
    (path,) = segment_files(store_path)
    offset, length = first_block(path)
    damaged = bytearray(path.read_bytes())
    damaged[offset + length // 2] ^= 0x10
    path.write_bytes(bytes(damaged))
    fresh = reopen(store_path).open_dataset("d")
    with pytest.raises(atlas.CorruptionError, match=path.name) as info:
        fresh.read_array("v")
    assert isinstance(info.value, OSError)
    with pytest.raises(atlas.CorruptionError, match=path.name):
        fresh.read_array("v", [0], [1])  # any read touching the damaged chunk
    with pytest.raises(atlas.CorruptionError, match=path.name):
        fresh.write_array("v", [1], np.array([0]))  # read-modify-write needs the chunk too
    report = reopen(store_path).verify()
    assert len(report.problems) == 1 and path.name in report.problems[0]


def test_damage_to_one_array_leaves_the_others_readable(store_path, rng):
    with atlas.Atlas.create(store_path) as store:
        ds = store.create_dataset("d")
        data = {}
        for name in ("hurt", "fine"):
            ds.define_array(name, "float32", dims=["x"], shape=[6], chunk_shape=[3])
            data[name] = rng.standard_normal(6).astype(np.float32)
            ds.write_array(name, [0], data[name])
    (path,) = segments_of(store_path, "hurt")
    offset, _ = first_block(path)
    damaged = bytearray(path.read_bytes())
    damaged[offset] ^= 0xFF
    path.write_bytes(bytes(damaged))
    fresh = reopen(store_path).open_dataset("d")
    assert_same(fresh.read_array("fine"), data["fine"])
    with pytest.raises(atlas.CorruptionError):  # small chunks share a block: both are hurt
        fresh.read_array("hurt", [3], [3])
    with pytest.raises(atlas.CorruptionError):
        fresh.read_array("hurt")


def test_a_truncated_segment_raises_corruption_error_naming_the_file(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("v", "int16", dims=["x"], shape=[4])
    ds.write_array("v", [0], np.arange(4, dtype=np.int16))
    store.flush()
    (path,) = segment_files(store_path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(atlas.CorruptionError, match=path.name):
        reopen(store_path).open_dataset("d").read_array("v")
    assert any(path.name in p for p in reopen(store_path).verify().problems)


def test_a_damaged_manifest_raises_corruption_error_naming_it(store, store_path):
    store.create_dataset("d")
    store.flush()
    manifest = store_path / "manifest.atlas"
    damaged = bytearray(manifest.read_bytes())
    damaged[-3] ^= 0x01
    manifest.write_bytes(bytes(damaged))
    with pytest.raises(atlas.CorruptionError, match="manifest.atlas"):
        atlas.Atlas.open(store_path)
    report = store.verify()  # a handle opened before the damage still reports it
    assert any("manifest.atlas" in p for p in report.problems)


def test_a_missing_segment_file_is_a_verify_problem(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("v", "int16", dims=["x"], shape=[4])
    ds.write_array("v", [0], np.arange(4, dtype=np.int16))
    store.flush()
    (path,) = segment_files(store_path)
    path.unlink()
    report = reopen(store_path).verify()
    assert not report.ok and any(path.name in p for p in report.problems)


def test_a_compaction_that_fails_before_its_commit_leaves_none_of_its_files(store, store_path,
                                                                            rng, monkeypatch):
    # (a damaged block it must copy, say): the files it wrote were left as orphans
    from atlas.core import _maintain

    model = _layered_store(store, rng, n_datasets=3, flushes=3)
    before = sorted(p.name for p in segment_files(store_path))
    real = _maintain.rewrite_segment
    calls = []

    def fails_the_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise atlas.CorruptionError("a damaged block")
        return real(*args, **kwargs)

    monkeypatch.setattr(_maintain, "rewrite_segment", fails_the_second_time)
    with pytest.raises(atlas.CorruptionError, match="a damaged block"):
        store.compact()
    back = reopen(store_path)
    assert back.verify().orphans == [] and back.verify().ok
    assert sorted(p.name for p in segment_files(store_path)) == before
    _check(back, model)
