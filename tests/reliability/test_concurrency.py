"""Concurrency: writer processes committing to one store at once, with readers, a compacting
writer and an orphan sweeper running meanwhile. Every acknowledged flush survives; the loser of
a race gets ConflictError and succeeds after reopening and redoing its batch; no reader ever
sees a torn state or an error, including readers still holding a manifest that a compaction
replaced; a sweeper never removes a file anyone still needs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import atlas
from atlas.format import segment as segfmt

from . import _writer
from ._harness import context, read_log, record

from _s3 import BUCKET, moto_s3  # noqa: F401, E402  (the moto server fixture, tests/_s3.py)


def _race(location, tmp_path: Path, batches: int, sweep: bool) -> dict:
    """Two writers (one compacting every third batch), two readers (one holding its manifest
    across others' commits), optionally a sweeper; returns the figures."""
    ctx = context()
    stop = tmp_path / "stop"
    start_at = time.time() + 1.0  # both writers begin together, once both have opened
    writers = {p: ctx.Process(target=_writer.concurrent_writer,
                              args=(location, p, batches, str(tmp_path / f"w{p}"),
                                    3 if p == "a" else 0, 0, start_at))
               for p in ("a", "b")}
    helpers = [ctx.Process(target=_writer.reader,
                           args=(location, str(tmp_path / f"r{i}"), str(stop), ("a", "b"),
                                 bool(i)))
               for i in range(2)]
    if sweep:
        helpers.append(ctx.Process(target=_writer.sweeper,
                                   args=(location, str(tmp_path / "sweep"), str(stop))))
    for proc in (*writers.values(), *helpers):
        proc.start()
    for proc in writers.values():
        proc.join(300)
    stop.touch()
    for proc in helpers:
        proc.join(60)
    assert all(p.exitcode == 0 for p in (*writers.values(), *helpers))

    store = _writer.open_store(location)
    expected = set()
    conflicts = compactions = 0
    for p in writers:
        lines = read_log(tmp_path / f"w{p}")
        assert lines[-1] == "END"
        acked = [int(x.split()[1]) for x in lines if x.startswith("ACK")]
        assert acked == list(range(batches))
        conflicts += sum(x.startswith("CONFLICT") for x in lines)
        compactions += sum(x.startswith("COMPACTED") for x in lines)
        expected |= {f"{p}{i}_{j}" for i in acked for j in range(2)}
    assert set(store.list_datasets()) == expected  # every acknowledged flush, nothing else
    for name in expected:
        _writer.check_owned(store, name)
    report = store.verify()
    assert report.ok, report.problems

    passes = 0
    for log in [f"r{i}" for i in range(2)] + (["sweep"] if sweep else []):
        lines = read_log(tmp_path / log)
        errors = [x for x in lines if x.startswith("ERROR")]
        assert not errors, f"{log}: {errors[:3]}"
        passes += sum(x.startswith(("OK", "SWEPT")) for x in lines)
    return {"batches_acknowledged": 2 * batches, "conflicts_retried": conflicts,
            "compactions": compactions, "reader_and_sweeper_passes": passes, "lost": 0}


def test_two_writers_race_and_every_acknowledged_flush_survives(tmp_path):
    atlas.Atlas.create(tmp_path / "store")
    figures = _race(str(tmp_path / "store"), tmp_path, batches=12, sweep=True)
    record("concurrency-local", **figures)
    assert figures["conflicts_retried"] > 0, "the writers never raced; the test proved nothing"
    assert figures["reader_and_sweeper_passes"] > 0


def test_two_writers_race_on_s3(tmp_path, moto_s3):
    url = f"s3://{BUCKET}/{moto_s3.new_prefix()}"
    atlas.Atlas.create(url, **moto_s3.options())
    figures = _race((url, moto_s3.options()), tmp_path, batches=6, sweep=False)
    record("concurrency-s3", **figures)
    assert figures["conflicts_retried"] > 0


# -- the grace period and the orphan sweep, one step at a time ------------------------------------


def _store_with_history(path) -> atlas.Atlas:
    store = atlas.Atlas.create(path)
    ds = store.create_dataset("a")
    ds.define_array("x", "int32", ["i"], [20], [5])
    for k in range(3):
        ds.write_array("x", [0], np.full(20, k, np.int32))
        store.flush()
    return store


def _files(path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in Path(path).rglob("*.seg")}


def test_reader_holding_the_previous_manifest_reads_through_a_compaction(tmp_path):
    writer = _store_with_history(tmp_path / "s")
    reader = atlas.Atlas.open(tmp_path / "s")  # holds the manifest of before the compaction
    before = _files(tmp_path / "s")
    writer.compact()
    assert np.array_equal(reader.open_dataset("a").read_array("x"), np.full(20, 2, np.int32))
    doc = atlas.Atlas.open(tmp_path / "s")._manifest.doc
    assert {key for key, _since in doc["retired"]} == before  # kept, and listed as retired
    assert atlas.Atlas.open(tmp_path / "s").verify().orphans == []  # retired is not orphaned


def test_retired_segments_go_once_their_grace_period_is_over(tmp_path):
    writer = _store_with_history(tmp_path / "s")
    old = _files(tmp_path / "s")
    writer.compact(grace=600)
    writer.open_dataset("a").write_array("x", [0], np.full(20, 7, np.int32))
    writer.compact(grace=0)  # everything retired so far is past a zero grace period
    assert not old & _files(tmp_path / "s")
    assert atlas.Atlas.open(tmp_path / "s")._manifest.doc["retired"] == []
    fresh = atlas.Atlas.open(tmp_path / "s")
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 7, np.int32))
    assert fresh.verify().ok


def test_sweeps_leave_a_live_writers_pending_segment_alone(tmp_path):
    writer = _store_with_history(tmp_path / "s")
    writer.open_dataset("a").write_array("x", [0], np.full(20, 9, np.int32))  # pending file
    pending = _files(tmp_path / "s") - {
        ref[0] for refs in writer._manifest.segments.values() for ref in refs}
    assert len(pending) == 1
    other = atlas.Atlas.open(tmp_path / "s")
    assert other.verify(repair=True).removed == []
    other.compact(grace=0)
    assert pending <= _files(tmp_path / "s")
    with pytest.raises(atlas.ConflictError):  # other committed meanwhile: writer redoes
        writer.flush()
    writer = atlas.Atlas.open(tmp_path / "s")
    writer.open_dataset("a").write_array("x", [0], np.full(20, 9, np.int32))
    writer.flush()
    fresh = atlas.Atlas.open(tmp_path / "s")
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 9, np.int32))
    assert fresh.verify().ok


def test_sweeps_remove_a_crashed_writers_leftovers_but_nothing_referenced(tmp_path):
    store = _store_with_history(tmp_path / "s")
    leftover = tmp_path / "s" / "segments" / "x" / "00000009-crashed.seg"
    leftover.write_bytes(b"ATLSEG01 and nothing else")
    report = atlas.Atlas.open(tmp_path / "s").verify(repair=True)
    assert report.orphans == ["segments/x/00000009-crashed.seg"]
    assert report.removed == report.orphans and not leftover.exists()
    assert atlas.Atlas.open(tmp_path / "s").verify().ok
    assert np.array_equal(store.open_dataset("a").read_array("x"), np.full(20, 2, np.int32))


def test_sweep_judges_files_by_the_newest_commit_not_its_own_stale_manifest(tmp_path):
    _store_with_history(tmp_path / "s")
    stale = atlas.Atlas.open(tmp_path / "s")
    newer = atlas.Atlas.open(tmp_path / "s")
    newer.open_dataset("a").write_array("x", [0], np.full(20, 5, np.int32))
    newer.flush()  # a segment the stale handle's manifest does not know
    assert stale.verify(repair=True).removed == []
    fresh = atlas.Atlas.open(tmp_path / "s")
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 5, np.int32))


def test_pending_segment_removed_between_create_and_lock_is_created_again(tmp_path, monkeypatch):
    """The window an orphan sweep could hit: the file exists, its writer holds no lock yet."""
    real_flock = segfmt.fcntl.flock
    calls = []

    def flock(fd, op):
        if not calls:
            (tmp_path / "p.seg").unlink()  # a sweep got there first
        calls.append(op)
        return real_flock(fd, op)

    monkeypatch.setattr(segfmt.fcntl, "flock", flock)
    writer = segfmt.SegmentWriter(str(tmp_path / "p.seg"))
    writer.append(0, 0, b"abc", 3, b"", 0, (0, 1, 0, 0))
    writer.finish()
    assert len(calls) == 2  # locked a second, fresh file
    assert (tmp_path / "p.seg").stat().st_size == writer.size
    writer.release()
