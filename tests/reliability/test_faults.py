"""Faults: full disks, I/O errors, torn and partial writes, failed renames and lost responses
during write_array, flush and compact. The failing call raises OSError, the store stays at its
previous commit (bit for bit: the manifest is unchanged), and the same call retried on the same
handle succeeds, leaving exactly the intended content and a clean verify()."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import atlas
from atlas.storage import FaultyStorage, LocalStorage

from . import _faults, _model
from ._harness import record

SEED = 21
BASE = 5  # batches committed before the faulty one


@pytest.fixture(scope="module", autouse=True)
def _figures():
    """Record what the scripted faults injected, once this module's tests are done."""
    yield
    if _faults.injected:
        record("faults-scripted", injected={f"{op} {mode}": n
                                            for (op, mode), n in _faults.injected.items()})


def _manifest_bytes(path) -> bytes:
    return (path / "manifest.atlas").read_bytes()


def _snapshot(path) -> list[str]:
    return _model.snapshot_store(atlas.Atlas.open(path))


def _prepared(path):
    """A store holding batches 0..BASE-1, and a faulty handle with batch BASE written but not
    flushed; returns (handle, wrapper, model of the committed state, model after the flush)."""
    store = atlas.Atlas.create(path)
    before = _model.Model()
    for b in range(BASE):
        _model.run_batch(SEED, b, before, store)
        store.flush()
    wrapper = _faults.ScriptedFaults(LocalStorage(path))
    handle = atlas.Atlas.open(wrapper)
    after = _model.replay(SEED, BASE - 1)
    _model.run_batch(SEED, BASE, after, handle)
    return handle, wrapper, before, after


FLUSH_FAULTS = [
    ("pwrite", "enospc", True), ("pwrite", "eio", False),  # while finishing pending segments
    ("publish", "eio", None), ("publish", "after", None),  # fsync of a finished segment
    ("commit", "enospc", None), ("commit", "torn-temp", None), ("commit", "full-temp", None),
    ("commit", "after", None),  # renamed, then the directory fsync failed
]


@pytest.mark.parametrize("op,mode,partial", FLUSH_FAULTS)
def test_failed_flush_leaves_the_previous_commit_and_a_retry_succeeds(tmp_path, op, mode,
                                                                      partial):
    path = tmp_path / "s"
    handle, wrapper, before, after = _prepared(path)
    committed = _manifest_bytes(path)
    if op == "pwrite":
        with _faults.failing_pwrite(1, partial, mode), pytest.raises(OSError):
            handle.flush()
    else:
        wrapper.arm(op, mode)
        with pytest.raises(OSError):
            handle.flush()
    if mode == "after" and op == "commit":
        # the new manifest landed before the error: the one outcome that is not "before"
        assert _snapshot(path) == _model.snapshot_model(after)
    else:
        assert _manifest_bytes(path) == committed
        assert _snapshot(path) == _model.snapshot_model(before)
    handle.flush()  # the retry, same handle
    assert _snapshot(path) == _model.snapshot_model(after)
    report = atlas.Atlas.open(path).verify(repair=True)
    assert report.ok, report.problems
    assert _snapshot(path) == _model.snapshot_model(after)


COMPACT_FAULTS = [
    ("pwrite", "enospc", True), ("get_range", "eio", None), ("spill_path", "enospc", None),
    ("publish", "eio", None), ("commit", "enospc", None), ("commit", "torn-temp", None),
    ("commit", "full-temp", None), ("delete", "eio", None),
]


@pytest.mark.parametrize("op,mode,partial", COMPACT_FAULTS)
def test_failed_compact_leaves_the_previous_commit_and_a_retry_succeeds(tmp_path, op, mode,
                                                                        partial):
    path = tmp_path / "s"
    handle, wrapper, _before, after = _prepared(path)
    handle.flush()
    handle.compact(grace=600)  # some retired files, so that the next compact deletes
    _model.run_batch(SEED, BASE + 1, after, handle)
    handle.flush()
    committed = _manifest_bytes(path)
    content = _model.snapshot_model(after)
    if op == "delete":  # deleting expired retired files happens after the commit
        wrapper.arm(op, mode)
        handle.compact(grace=0)  # must not raise: the commit stands, the file is an orphan
        assert _manifest_bytes(path) != committed
    else:
        if op == "pwrite":
            ctx = _faults.failing_pwrite(2, partial, mode)
        else:
            wrapper.arm(op, mode)
            ctx = _nothing()
        with ctx, pytest.raises(OSError):
            handle.compact(grace=0)
        assert _manifest_bytes(path) == committed
        assert _snapshot(path) == content
        handle.compact(grace=0)
    assert _snapshot(path) == content
    report = atlas.Atlas.open(path).verify(repair=True)
    assert report.ok, report.problems
    assert not atlas.Atlas.open(path).verify().orphans  # the repair took the leftovers
    assert _snapshot(path) == content


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("partial", [True, False])
def test_write_array_failing_part_way_is_completed_by_repeating_it(tmp_path, partial):
    """A write that raises OSError may have applied some of its chunks to the pending state;
    the flush is still all or nothing, and repeating the write (it is idempotent) completes it."""
    path = tmp_path / "s"
    store = atlas.Atlas.create(path)
    ds = store.create_dataset("d")
    ds.define_array("x", "float64", ["i", "j"], [40, 30], [8, 8], float("nan"))
    store.flush()
    committed = _manifest_bytes(path)
    data = np.random.default_rng(3).normal(size=(40, 30))
    with _faults.failing_pwrite(7, partial), pytest.raises(OSError):
        ds.write_array("x", [0, 0], data)
    assert _manifest_bytes(path) == committed
    ds.write_array("x", [0, 0], data)
    store.flush()
    fresh = atlas.Atlas.open(path)
    assert np.array_equal(fresh.open_dataset("d").read_array("x"), data)
    assert fresh.verify().ok


def test_creating_a_pending_segment_on_a_full_disk_changes_nothing(tmp_path):
    path = tmp_path / "s"
    handle, wrapper, before, after = _prepared(path)
    handle.flush()
    ds = handle.open_dataset("progress")
    ds.define_array("z", "int8", ["i"], [4], [4], None)
    wrapper.arm("spill_path", "enospc")
    with pytest.raises(OSError):
        ds.write_array("z", [0], np.arange(4, dtype=np.int8))
    ds.write_array("z", [0], np.arange(4, dtype=np.int8))
    handle.flush()
    assert np.array_equal(atlas.Atlas.open(path).open_dataset("progress").read_array("z"),
                          np.arange(4, dtype=np.int8))


def _random_faults(tmp_path, batches: int, rate: float, seed: int) -> dict:
    """The seeded workload through atlas' FaultyStorage failing a share of write requests
    (before or after they land) and of segment writes; every failed flush or compact is checked
    and retried until it succeeds."""
    path = tmp_path / "s"
    atlas.Atlas.create(path)
    rng = np.random.default_rng(seed)
    faulty = FaultyStorage(LocalStorage(path), rate=rate, seed=seed,
                           ops=("publish", "commit", "delete"),
                           when="after" if seed % 2 else "before")
    handle = atlas.Atlas.open(faulty)
    model = _model.Model()
    failures: Counter = Counter()
    for b in range(batches):
        previous = _model.snapshot_model(model)
        _model.run_batch(seed, b, model, handle)
        intended = _model.snapshot_model(model)
        for call in ("flush", "compact") if rng.random() < 0.3 else ("flush",):
            for _attempt in range(400):  # a compact makes ~7 requests, ~8% get through
                try:
                    if rng.random() < rate:
                        with _faults.failing_pwrite(int(rng.integers(1, 4)), True):
                            getattr(handle, call)()
                    else:
                        getattr(handle, call)()
                    break
                except OSError:
                    failures[call] += 1
                    # the store holds the previous state or (a lost response) the new one
                    assert _snapshot(path) in (previous, intended)
                except atlas.ConflictError:
                    # a compact whose commit landed although its response was lost: its retry
                    # is a new commit on a stale handle, refused; reopening is the remedy
                    assert call == "compact"
                    failures["compact retry refused after a lost response"] += 1
                    handle = atlas.Atlas.open(faulty)
                    break
            else:
                raise AssertionError(f"{call} never succeeded")
            previous = intended
        assert _snapshot(path) == intended
    assert atlas.Atlas.open(path).verify().ok
    return {"batches": batches, "failed_calls": dict(failures),
            "storage_faults": len(faulty.injected)}


def test_random_faults_through_a_whole_workload_lose_nothing(tmp_path):
    figures = _random_faults(tmp_path, batches=12, rate=0.3, seed=4)
    figures2 = _random_faults(tmp_path / "b", batches=12, rate=0.3, seed=5)
    record("faults-random", runs=[figures, figures2])
    assert figures["storage_faults"] + figures2["storage_faults"] > 5


@pytest.mark.slow
def test_random_faults_long_run(tmp_path):
    runs = [_random_faults(tmp_path / str(s), batches=120, rate=0.3, seed=s) for s in range(6)]
    record("faults-random-slow", runs=runs)
