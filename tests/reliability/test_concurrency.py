"""Concurrency: writer processes committing to one store at once, with readers, a compacting
writer, a writer flushing one dataset at a time (so that flushes run the size-tiered merge) and
an orphan sweeper running meanwhile. Every acknowledged flush survives; the loser of a race
re-applies its changes on top of the winner's commit (a rebase: these writers never change the
same thing, so none conflicts); no reader ever sees a torn
state or an error, including readers still holding a root that a merge or a compaction
replaced; a sweeper never removes a file anyone still needs - committed, retired for older
readers, or a live writer's segment, catalog part or merged file not committed yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import atlas
from atlas.core._maintain import FANOUT
from atlas.format import catalog as partfmt
from atlas.format import container
from atlas.format import root as root_format
from atlas.format import segment as segfmt
from atlas.storage import LocalStorage, StorageWrapper

from . import _writer
from ._harness import context, read_log, record

from _s3 import BUCKET, moto_s3  # noqa: F401, E402  (the moto server fixture, tests/_s3.py)


def _race(location, tmp_path: Path, batches: int, sweep: bool) -> dict:
    """Two writers (``a`` compacting every fourth batch, ``b`` flushing each dataset on its
    own), two readers (one holding its root across others' commits), optionally a sweeper;
    returns the figures."""
    import time

    ctx = context()
    stop = tmp_path / "stop"
    start_at = time.time() + 1.0  # both writers begin together, once both have opened
    writers = {p: ctx.Process(target=_writer.concurrent_writer,
                              args=(location, p, batches, str(tmp_path / f"w{p}"),
                                    4 if p == "a" else 0, 0, start_at, p == "b"))
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
    conflicts = rebases = compactions = merges = 0
    for p in writers:
        lines = read_log(tmp_path / f"w{p}")
        assert lines[-1] == "END"
        acked = [int(x.split()[1]) for x in lines if x.startswith("ACK")]
        assert acked == list(range(batches))
        conflicts += sum(x.startswith("CONFLICT") for x in lines)
        rebases += sum(x.startswith("REBASED") for x in lines)
        compactions += sum(x.startswith("COMPACTED") for x in lines)
        merges += sum(x.startswith("MERGED") for x in lines)
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
    assert conflicts == 0, "disjoint writers conflicted"
    return {"batches_acknowledged": 2 * batches, "rebased_flushes": rebases,
            "compactions": compactions, "merging_flushes": merges,
            "reader_and_sweeper_passes": passes, "lost": 0}


def test_two_writers_race_and_every_acknowledged_flush_survives(tmp_path):
    atlas.Atlas.create(tmp_path / "store")
    figures = _race(str(tmp_path / "store"), tmp_path, batches=12, sweep=True)
    record("concurrency-local", **figures)
    assert figures["rebased_flushes"] > 0, "the writers never raced; the test proved nothing"
    assert figures["merging_flushes"] > 0, "no flush merged files under the readers"
    assert figures["reader_and_sweeper_passes"] > 0


def test_two_writers_race_on_s3(tmp_path, moto_s3):
    url = f"s3://{BUCKET}/{moto_s3.new_prefix()}"
    atlas.Atlas.create(url, **moto_s3.options())
    figures = _race((url, moto_s3.options()), tmp_path, batches=6, sweep=False)
    record("concurrency-s3", **figures)
    assert figures["rebased_flushes"] > 0


# -- the grace period and the orphan sweep, one step at a time ------------------------------------


def _store_with_history(path, flushes: int = 3) -> atlas.Atlas:
    store = atlas.Atlas.create(path)
    ds = store.create_dataset("a")
    ds.define_array("x", "int32", ["i"], [20], [5])
    for k in range(flushes):
        ds.write_array("x", [0], np.full(20, k, np.int32))
        store.flush()
    return store


def _files(path) -> set[str]:
    """Every segment and catalog part under a store directory."""
    return {p.relative_to(path).as_posix() for pattern in ("segments/*.seg", "catalog/*.cat")
            for p in Path(path).glob(pattern)}


def test_reader_holding_an_older_root_reads_through_a_merge_and_a_compaction(tmp_path):
    last = FANOUT - 1  # flushes before, writing 0, 1, ... last - 1
    writer = _store_with_history(tmp_path / "s", flushes=last)
    # hold the root of before, nothing read yet (a file once mapped stays readable)
    first, second = atlas.Atlas.open(tmp_path / "s"), atlas.Atlas.open(tmp_path / "s")
    before = _files(tmp_path / "s")
    writer.open_dataset("a").write_array("x", [0], np.full(20, 7, np.int32))
    writer.flush()  # the FANOUT-th part and segment in a row: merged, the originals retired
    old = np.full(20, last - 1, np.int32)
    assert np.array_equal(first.open_dataset("a").read_array("x"), old)
    merged = atlas.Atlas.open(tmp_path / "s")._root
    writer.compact()  # retires the merged files too
    assert np.array_equal(second.open_dataset("a").read_array("x"), old)
    assert second.list_datasets() == ["a"]
    assert before <= {key for key, _since, _gen in merged.retired}
    fresh = atlas.Atlas.open(tmp_path / "s")
    # nothing an older root needs went: still listed (live or retired), still there; a file
    # retired by the commit that wrote it (the flush's own segment, merged at once) was never
    # in any version, and an expiry may take it
    never_read = {key for key, _since, gen in merged.retired
                  if int(key.split("/")[-1][:8]) == gen}
    assert (before | merged.keys()) - never_read <= fresh._root.keys() & _files(tmp_path / "s")
    assert fresh.verify().orphans == []  # retired is not orphaned
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 7, np.int32))


def test_retired_files_go_once_their_grace_period_is_over(tmp_path):
    writer = _store_with_history(tmp_path / "s")
    old = _files(tmp_path / "s")
    writer.compact(grace=600)
    writer.open_dataset("a").write_array("x", [0], np.full(20, 7, np.int32))
    writer.compact(grace=0)  # everything retired so far is past a zero grace period
    assert not old & _files(tmp_path / "s")
    fresh = atlas.Atlas.open(tmp_path / "s")
    assert fresh._root.retired == []
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 7, np.int32))
    assert fresh.verify().ok


def test_sweeps_leave_a_live_writers_pending_segment_alone(tmp_path):
    # its flush is the FANOUT-th: the merge it plans needs files that the compaction below
    # (no grace) deletes, so it merges nothing and re-applies
    writer = _store_with_history(tmp_path / "s", flushes=FANOUT - 1)
    writer.open_dataset("a").write_array("x", [0], np.full(20, 9, np.int32))  # pending file
    pending = _files(tmp_path / "s") - writer._root.keys()
    assert len(pending) == 1
    other = atlas.Atlas.open(tmp_path / "s")
    assert other.verify(repair=True).removed == []
    other.compact(grace=0)
    assert pending <= _files(tmp_path / "s")
    writer.flush()  # other committed meanwhile: the flush re-applies on top of the compaction
    fresh = atlas.Atlas.open(tmp_path / "s")
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 9, np.int32))
    assert fresh.verify().ok


class _SweepBeforeCommit(StorageWrapper):
    """Runs ``sweep`` when the wrapped handle is first about to commit: its segments, catalog
    part and merged files are all written, none is referenced yet. Records which they are."""

    def __init__(self, inner, sweep):
        super().__init__(inner)
        self.sweep, self.in_flight = sweep, None

    def commit(self, key, data, expected):
        if self.in_flight is None:
            old = root_format.decode(self.inner.read_manifest(key)[0], key)
            self.in_flight = root_format.decode(data, key).keys() - old.keys()
            self.sweep()
        return self.inner.commit(key, data, expected)


def _flush_beside_a_sweep(path, sweep: str, write) -> tuple[list, bool, set]:
    """``write(writer)`` on a new handle, then its flush, paused before its commit while
    another handle sweeps (``sweep``: "verify-repair", or "compact", which commits first and
    then sweeps). Returns (what the sweep removed, whether every file the flush was about to
    commit was still there, those files)."""
    survived = []

    def other():
        handle = atlas.Atlas.open(path)
        removed = handle.verify(repair=True).removed if sweep == "verify-repair" else (
            handle.compact(grace=0) or [])
        survived.append((removed, wrapper.in_flight <= _files(path)))

    wrapper = _SweepBeforeCommit(LocalStorage(path), other)
    writer = atlas.Atlas.open(wrapper)
    write(writer)
    writer.flush()
    removed, kept = survived[0]
    return removed, kept, wrapper.in_flight


@pytest.mark.parametrize("sweep", ["verify-repair", "compact"])
def test_sweeps_leave_a_live_writers_catalog_part_and_merged_files_alone(tmp_path, sweep):
    """A flush paused just before its commit, with its new segment, catalog part and merged
    files written, while another handle sweeps orphans (verify(repair=True), or a compaction
    that commits first and then sweeps): none of the writer's files may go."""
    path = tmp_path / "s"
    _store_with_history(path, flushes=FANOUT - 1)
    # the FANOUT-th flush: merges, then commits after the sweep (after a compaction that committed
    # first, it re-applies its own changes on top of it)
    removed, kept, in_flight = _flush_beside_a_sweep(
        path, sweep, lambda writer: writer.open_dataset("a").write_array(
            "x", [0], np.full(20, 8, np.int32)))
    assert removed == [] and kept, f"the sweep took a live writer's files: {in_flight}"
    assert any(key.startswith("catalog/") for key in in_flight)
    assert len(in_flight) >= 4  # a segment, a part, a merged segment and a merged part
    fresh = atlas.Atlas.open(path)
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 8, np.int32))
    assert fresh.verify().ok


@pytest.mark.parametrize("sweep", ["verify-repair", "compact"])
def test_sweeps_and_compactions_leave_the_files_a_live_writers_merge_links_alone(tmp_path,
                                                                               sweep):
    """As above, with a merge that links: each flush fills 4 KiB blocks with new datasets, so
    the FANOUT-th flush's merge lists the blocks of the committed segments and of its own new
    one where they lie. A sweep before its commit must take none of them; a compaction that
    commits first makes the flush re-apply without its merge."""
    path = tmp_path / "s"
    store = atlas.Atlas.create(path, block_size=4096)
    expected = {}

    def write(handle, f):
        for i in range(4):
            name = f"f{f}_{i}"
            expected[name] = np.arange(256, dtype=np.int32) + 1000 * f + i
            handle.create_dataset(name).define_array("x", "int32", ["i"], [256], [32])
            handle.open_dataset(name).write_array("x", [0], expected[name])

    run = FANOUT  # every segment here is of level 0
    for f in range(run - 1):
        write(store, f)
        store.flush()
    removed, kept, in_flight = _flush_beside_a_sweep(path, sweep, lambda w: write(w, run - 1))
    assert removed == [] and kept, f"the sweep took a live writer's files: {in_flight}"
    fresh = atlas.Atlas.open(path)
    if sweep == "verify-repair":
        assert len(fresh._root.linked) == run, "the merge did not link the run's files"
    for name, values in expected.items():
        assert np.array_equal(fresh.open_dataset(name).read_array("x"), values), name
    report = fresh.verify(repair=True)
    assert report.ok and report.removed == [], report
    assert all(np.array_equal(atlas.Atlas.open(path).open_dataset(n).read_array("x"), v)
               for n, v in expected.items())


def test_sweeps_remove_a_crashed_writers_leftovers_but_nothing_referenced(tmp_path):
    store = _store_with_history(tmp_path / "s")
    leftovers = [f"segments/00000009-{'a' * 32}.seg", f"catalog/00000009-{'b' * 32}.cat",
                 f"segments/x/00000009-{'c' * 32}.seg"]  # the last one: format version 1
    for key in leftovers:
        (tmp_path / "s" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "s" / key).write_bytes(b"ATLSEG02 and nothing else")
    report = atlas.Atlas.open(tmp_path / "s").verify(repair=True)
    assert sorted(report.orphans) == sorted(leftovers)
    assert sorted(report.removed) == sorted(leftovers)
    assert not any((tmp_path / "s" / key).exists() for key in leftovers)
    assert atlas.Atlas.open(tmp_path / "s").verify().ok
    assert np.array_equal(store.open_dataset("a").read_array("x"), np.full(20, 2, np.int32))


def test_sweep_judges_files_by_the_newest_commit_not_its_own_stale_root(tmp_path):
    _store_with_history(tmp_path / "s")
    stale = atlas.Atlas.open(tmp_path / "s")
    newer = atlas.Atlas.open(tmp_path / "s")
    newer.open_dataset("a").write_array("x", [0], np.full(20, 5, np.int32))
    newer.flush()  # a segment and a part the stale handle's root does not know
    assert stale.verify(repair=True).removed == []
    fresh = atlas.Atlas.open(tmp_path / "s")
    assert np.array_equal(fresh.open_dataset("a").read_array("x"), np.full(20, 5, np.int32))
    assert fresh.verify().ok


@pytest.mark.parametrize("kind", ["segment", "part"])
def test_file_removed_between_create_and_lock_is_created_again(tmp_path, monkeypatch, kind):
    """The window an orphan sweep could hit: the file exists, its writer holds no lock yet."""
    real_flock = container.fcntl.flock
    path = tmp_path / f"p.{kind}"
    calls = []

    def flock(fd, op):
        if not calls:
            path.unlink()  # a sweep got there first
        calls.append(op)
        return real_flock(fd, op)

    monkeypatch.setattr(container.fcntl, "flock", flock)
    if kind == "segment":
        writer = segfmt.SegmentWriter(str(path))
        writer.write_block(b"abc", 3, 0)
        writer.finish()
    else:
        writer = partfmt.write_part(str(path), {})
    assert len(calls) == 2  # locked a second, fresh file
    assert path.stat().st_size == writer.size
    writer.release()
