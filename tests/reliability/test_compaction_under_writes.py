"""Compaction under steady writes (item 6 of issue 17).

A compaction used to lose every race against writers flushing often, and each loss left its
whole rewritten copy behind. Now a compaction that finds newer commits re-applies its result on
top of them when the files it replaced are still there; when another compaction or merge took
them, it deletes what it wrote and compacts the newest commit. These tests put another writer's
commit (or compaction) exactly between a compaction's writing and its commit, and run one
against a writer process flushing ten times a second.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import atlas
from atlas.storage import LocalStorage, StorageWrapper

from ._harness import context


class _BeforeFirstCommit(StorageWrapper):
    """Runs ``meanwhile`` once, when the wrapped handle first commits (its files written)."""

    def __init__(self, inner, meanwhile):
        super().__init__(inner)
        self.meanwhile, self.ran = meanwhile, False

    def commit(self, key, data, expected):
        if not self.ran:
            self.ran = True
            self.meanwhile()
        return self.inner.commit(key, data, expected)


def _datasets(store: atlas.Atlas, names, value: int) -> None:
    for name in names:
        view = store.create_dataset(name)
        view.define_array("x", "int32", ["i"], [50], [10])
        view.write_array("x", [0], np.arange(50, dtype=np.int32) + value)
        view.set_attribute("value", value)
        store.flush()  # a file per flush: something to compact


def _compactions(monkeypatch, attempts: int | None = None) -> list[bool]:
    """What each call of ``_maintain.compact`` returns from now on (True: it landed), in a list
    the caller reads; ``attempts``: how many tries a ``compact()`` makes."""
    from atlas.core import _atlas, _maintain

    outcomes: list[bool] = []
    real = _maintain.compact
    monkeypatch.setattr(_maintain, "compact", lambda *a, **k: outcomes.append(real(*a, **k)) or
                        outcomes[-1])
    if attempts is not None:
        monkeypatch.setattr(_atlas, "COMPACT_ATTEMPTS", attempts)
    return outcomes


def _files(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for pattern in ("segments/*.seg", "catalog/*.cat")
            for p in path.glob(pattern)}


def _check(path: Path, expected: dict[str, int]) -> atlas.Atlas:
    store = atlas.Atlas.open(path)
    assert sorted(store.list_datasets()) == sorted(expected)
    for name, value in expected.items():
        view = store.open_dataset(name)
        np.testing.assert_array_equal(view.read_array("x"), np.arange(50) + value)
        assert view.get_attribute("value") == value
    report = store.verify()
    assert report.ok and report.orphans == [], (report.problems, report.orphans)
    assert _files(path) <= store._root.keys()  # nothing on disk that no version lists
    return store


@pytest.mark.parametrize("meanwhile", ["flush", "flush and merge"])
def test_a_compaction_overtaken_by_a_flush_reapplies_on_top(tmp_path, meanwhile):
    path = tmp_path / "s"
    _datasets(atlas.Atlas.create(path), [f"a{i}" for i in range(5)], 1)
    other = atlas.Atlas.open(path)
    count = 1 if meanwhile == "flush" else 9  # nine flushes in a row merge the newest files

    def commit_first():
        _datasets(other, [f"b{i}" for i in range(count)], 2)

    compacting = atlas.Atlas.open(_BeforeFirstCommit(LocalStorage(path), commit_first))
    compacting.compact()
    root = atlas.Atlas.open(path)._root
    # the compaction committed on top of the other's commits (then maybe an expiry)
    assert "compact" in [v.message for v in atlas.Atlas.open(path).history()][:2]
    assert len(root.parts) <= 2  # the compacted part, then the other's newer ones on top
    _check(path, {**{f"a{i}": 1 for i in range(5)}, **{f"b{i}": 2 for i in range(count)}})


def test_a_compaction_whose_newest_files_a_writer_merged_meanwhile_goes_under_them(
        tmp_path, monkeypatch):
    """The other writer's flush merges its new file with the newest three of the files being
    compacted (their blocks linked: the store keeps versions). The compaction commits at its
    first try, the merged file after the compacted one; once every older version expires, the
    files that merged file links are still there."""
    from atlas.core import _maintain

    outcomes = _compactions(monkeypatch)
    path = tmp_path / "s"
    # a dataset's 4 KB, incompressible: a block that merges link rather than copy
    store = atlas.Atlas.create(path, block_size=4096)
    values = {}
    rng = np.random.default_rng(7)

    def add(target: atlas.Atlas, name: str, _value: int) -> None:
        view = target.create_dataset(name)
        view.define_array("x", "int32", ["i"], [1000], [1000])
        values[name] = rng.integers(-2**31, 2**31, 1000, dtype=np.int32)
        view.write_array("x", [0], values[name])

    for i in range(_maintain.LEVEL_BASE * _maintain.FANOUT // 4000 + 4):
        add(store, f"a{i}", i + 1)
    store.flush()
    assert [r.level for r in store._root.segments["x"]] == [1]
    for i in range(3):
        add(store, f"b{i}", 20 + i)
        store.flush()  # three of level 0
    assert [r.level for r in store._root.segments["x"]] == [1, 0, 0, 0]
    other = atlas.Atlas.open(path)

    def commit_first():
        add(other, "c", 30)
        other.flush()  # the fourth file of level 0: merged with the three before it

    compacting = atlas.Atlas.open(_BeforeFirstCommit(LocalStorage(path), commit_first))
    base = compacting._root.segments["x"]
    compacting.compact()
    assert outcomes == [True]
    root = atlas.Atlas.open(path)._root
    merged = root.segments["x"][-1]
    assert [r.key for r in root.segments["x"][:1]] != [base[0].key]  # the compacted copy
    assert len(root.segments["x"]) == 2 and merged.key not in {r.key for r in base}
    linked = atlas.Atlas.open(path)._files.segment(merged).linked
    assert linked and {key for key, _size in linked} <= {r.key for r in root.linked}
    atlas.Atlas.open(path).expire(older_than=0, keep_last=1)  # only the latest version stays
    reader = atlas.Atlas.open(path)
    for name, expected in values.items():
        np.testing.assert_array_equal(reader.open_dataset(name).read_array("x"), expected)
    report = reader.verify()
    assert report.ok and report.orphans == [], (report.problems, report.orphans)


def test_the_last_try_goes_under_a_merge_that_took_the_whole_list(tmp_path, monkeypatch):
    """In a small store every file is of level 0, so a writer's merge takes every file being
    compacted: the first tries start over on the newest commit, the last one lands on top."""
    outcomes = _compactions(monkeypatch, attempts=1)  # the first try is the last
    path = tmp_path / "s"
    _datasets(atlas.Atlas.create(path), [f"a{i}" for i in range(3)], 1)
    other = atlas.Atlas.open(path)
    doomed = atlas.Atlas.open(path)
    doomed.delete_dataset("a1")
    doomed.flush()

    def commit_first():  # four flushes: the merge takes the three files compacted and a new one
        _datasets(other, [f"b{i}" for i in range(4)], 2)

    compacting = atlas.Atlas.open(_BeforeFirstCommit(LocalStorage(path), commit_first))
    compacting.compact()
    assert outcomes == [True]
    _check(path, {"a0": 1, "a2": 1, **{f"b{i}": 2 for i in range(4)}})


@pytest.mark.parametrize("recreate", [False, True])
def test_the_last_try_keeps_what_a_writer_deleted_meanwhile(tmp_path, monkeypatch, recreate):
    """The writer deletes datasets after the compaction read the store, then its merge takes
    the whole catalog list from the oldest part, dropping their tombstones: the compacted copy
    still has them live, and laid under that merge it brought them back (a name re-created
    meanwhile was then listed twice). Found by a hostile-user helper."""
    outcomes = _compactions(monkeypatch, attempts=1)  # the first try is the last
    path = tmp_path / "s"
    _datasets(atlas.Atlas.create(path), [f"a{i}" for i in range(3)], 1)
    other = atlas.Atlas.open(path)

    def commit_first():
        other.delete_dataset("a0")
        other.delete_dataset("a2")
        if recreate:
            _datasets(other, ["a2"], 5)  # flushes the deletes with it
        else:
            other.flush()
        _datasets(other, [f"b{i}" for i in range(4)], 2)  # a merge takes the whole list
        assert other._root.parts[0].key != first_part  # (what this test is about)

    compacting = atlas.Atlas.open(_BeforeFirstCommit(LocalStorage(path), commit_first))
    first_part = compacting._root.parts[0].key
    compacting.compact()
    assert outcomes == [True]
    _check(path, {"a1": 1, **({"a2": 5} if recreate else {}), **{f"b{i}": 2 for i in range(4)}})


def test_compact_on_a_handle_that_others_committed_after_compacts_the_newest(tmp_path):
    path = tmp_path / "s"
    atlas.Atlas.create(path)
    writer = atlas.Atlas.open(path)
    _datasets(writer, ["d0"], 0)
    kept_open = atlas.Atlas.open(path)  # say, a maintenance process's handle
    _datasets(writer, ["d1", "d2"], 1)
    writer.delete_dataset("d1")
    writer.flush()
    kept_open.compact()  # it had compacted its own snapshot, one file already: nothing
    root = atlas.Atlas.open(path)._root
    assert len(root.parts) == 1 and all(len(refs) == 1 for refs in root.segments.values())
    _check(path, {"d0": 0, "d2": 1})


def test_a_compaction_that_loses_to_another_deletes_its_copy_and_compacts_again(tmp_path,
                                                                              monkeypatch):
    outcomes = _compactions(monkeypatch)
    path = tmp_path / "s"
    _datasets(atlas.Atlas.create(path), [f"a{i}" for i in range(6)], 3)
    written = []

    def other_compacts():
        atlas.Atlas.open(path).compact()
        written.extend(sorted(_files(path)))

    compacting = atlas.Atlas.open(_BeforeFirstCommit(LocalStorage(path), other_compacts))
    compacting.compact()  # its first attempt replaced files the other compaction took
    assert outcomes == [True, False, True]  # the other's, the loss, the retry on the newest
    store = _check(path, {f"a{i}": 3 for i in range(6)})
    assert len(store._root.parts) == 1
    compacting.compact(grace=0)  # and once nothing old is kept, only the live files remain
    store = _check(path, {f"a{i}": 3 for i in range(6)})
    assert _files(path) == {ref.key for ref in store._root.parts} | {
        ref.key for refs in store._root.segments.values() for ref in refs}


def _steady_writer(path: str, stop: str, log: str) -> None:
    """Flush a new dataset about ten times a second until ``stop`` exists."""
    store = atlas.Atlas.open(path)
    done = 0
    while not Path(stop).exists():
        _datasets(store, [f"w{done}"], done)
        done += 1
        time.sleep(0.1)
    Path(log).write_text(str(done))


def test_compaction_finishes_while_a_writer_flushes_ten_times_a_second(tmp_path):
    path = tmp_path / "s"
    _datasets(atlas.Atlas.create(path), [f"a{i}" for i in range(20)], 4)
    stop, log = tmp_path / "stop", tmp_path / "log"
    writer = context().Process(target=_steady_writer, args=(str(path), str(stop), str(log)))
    writer.start()
    try:
        time.sleep(1.0)  # the writer is flushing
        compactions = 0
        started = time.monotonic()
        while compactions < 3:  # the default retention: the writer's versions stay readable
            atlas.Atlas.open(path).compact()
            compactions += 1
        took = time.monotonic() - started
    finally:
        stop.touch()
        writer.join(60)
    assert writer.exitcode == 0
    flushed = int(log.read_text())
    assert flushed > 5, "the writer hardly ran; the test proved nothing"
    assert took < 120, f"three compactions under steady writes took {took:.0f} s"
    atlas.Atlas.open(path).compact(grace=0)  # settle: the last expiry after the writer stopped
    _check(path, {**{f"a{i}": 4 for i in range(20)}, **{f"w{d}": d for d in range(flushed)}})
