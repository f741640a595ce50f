"""Processes the reliability tests start and kill: a crash-test writer, a concurrent writer and a
reader. Each writes one line per event to a log file with ``os.write`` (unbuffered, so a line is
on record the moment it is written, whatever happens to the process next):

    READY <batch>            opened the store, which held this batch
    WRITE/FLUSH/COMPACT <b>  about to write batch b / flush it / compact after it
    MERGE/MERGED <b>         the flush of batch b starts / ends the size-tiered merge
    ACK <b> <digest>         flush of batch b returned; digest of what it committed
    COMPACTED <b>            compact after batch b returned

Run as a script (``python tests/reliability/_writer.py STORE SEED LOG``) it is the crash writer;
the tests also run the same functions in processes forked from a preloaded server
(``multiprocessing`` forkserver), which makes hundreds of kills affordable.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

try:  # a package module inside the tests, a top-level one when run as a script
    from . import _model
except ImportError:  # pragma: no cover - script mode
    import _model  # type: ignore[no-redef]

import atlas

CRASH_POINTS = ("block-write", "segment-finish", "part-write", "publish", "merge",
                "manifest-temp", "manifest-rename", "retire-delete", "orphan-remove")
COMPACT_CHANCE = 0.06  # per batch; rare enough that the lists grow to 8 files and get merged
RETIRED_INLINE = 8  # entries a root keeps inline in these writers (256 in the library)


class _Log:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, nth: int) -> None:
    """Make this process SIGKILL itself at the nth time it reaches ``point``."""
    from atlas.core import _maintain
    from atlas.format import segment
    from atlas.storage import _local

    hits = [0]

    def hit() -> None:
        hits[0] += 1
        if hits[0] == nth:
            _die()

    def around(owner, name, before=False, when=lambda *a, **k: True):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if before and when(*args, **kwargs):
                hit()
            result = original(*args, **kwargs)
            if not before and when(*args, **kwargs):
                hit()
            return result

        setattr(owner, name, wrapper)

    if point == "block-write":  # pending segments, merged and compacted segments
        around(segment.SegmentWriter, "write_block", before=True)
    elif point == "segment-finish":  # index, footer and trailer written, not yet published
        around(segment.SegmentWriter, "finish")
    elif point == "part-write":  # a catalog part written (a flush's, a merge's, a compaction's)
        around(_maintain, "write_file")
    elif point == "publish":  # before the fsync of a segment or part: some synced, some not
        around(_local, "_fsync_path", before=True,
               when=lambda path: path.endswith((".seg", ".cat")))
    elif point == "merge":  # the merged files written and published, the root not yet
        original = _maintain.tiered_merge

        def merge_then_hit(*args, **kwargs):
            merges = original(*args, **kwargs)
            if merges.written:
                hit()
            return merges

        _maintain.tiered_merge = merge_then_hit
    elif point == "manifest-temp":  # temp file written and synced, not yet renamed
        around(os, "replace", before=True, when=lambda src, dst: dst.endswith("manifest.atlas"))
    elif point == "manifest-rename":  # renamed, directory not yet synced
        around(os, "replace", when=lambda src, dst: dst.endswith("manifest.atlas"))
    elif point == "retire-delete":  # deleting files retired longer than the grace period
        around(_local.LocalStorage, "delete", before=True)
    elif point == "orphan-remove":
        around(_local.LocalStorage, "remove_unused", before=True)
    else:
        raise ValueError(f"unknown crash point {point!r}; known: {CRASH_POINTS}")


def _log_merges(say, batch: list[int]) -> None:
    """Log MERGE/MERGED around every size-tiered merge that merges something."""
    from atlas.core import _maintain

    original = _maintain.tiered_merge

    def logged(store, root, *args, **kwargs):
        runs = [root.parts, *root.segments.values()]
        merging = any(_maintain._run_to_merge(refs) for refs in runs)
        if merging:
            say(f"MERGE {batch[0]}")
        merges = original(store, root, *args, **kwargs)
        if merging:
            say(f"MERGED {batch[0]} {len(root.linked)}")  # files its blocks are linked from
        return merges

    _maintain.tiered_merge = logged


def _open_or_create(path: str, say) -> "atlas.Atlas":
    try:
        return atlas.Atlas.open(path)
    except atlas.StoreNotFoundError:
        # small blocks: merges repack full ones, and later merges link them
        store = atlas.Atlas.create(path, block_size=4096)
        say("CREATED")
        return store


def store_batch(store) -> int:
    """The batch a store holds (-1: none yet)."""
    if not store.dataset_exists(_model.PROGRESS):
        return -1
    value = store.open_dataset(_model.PROGRESS).get_attribute("batch")
    return -1 if value is None else int(value)


def crash_writer(path: str, seed: int, log_path: str, crash_point: str | None = None,
                 nth: int = 1, deadline: float = 120.0, orphan_sweeps: bool = True) -> None:
    """Continue the seeded workload on the store at ``path`` until killed (or ``deadline``
    seconds pass): write a batch, flush, now and then compact."""
    from atlas.core import _maintain

    # retired lists written and merged every few flushes, so that kills land in them too
    _maintain.RETIRED_INLINE = RETIRED_INLINE
    say = _Log(log_path)
    store = _open_or_create(path, say)
    done = store_batch(store)
    model = _model.replay(seed, done)
    current = [done + 1]
    if crash_point:
        _arm(crash_point, nth)
    _log_merges(say, current)  # outside the crash point's wrapper: a kill there is "merge"
    say(f"READY {done}")
    end = time.monotonic() + deadline
    batch = done + 1
    while time.monotonic() < end:
        current[0] = batch
        say(f"WRITE {batch}")
        _model.run_batch(seed, batch, model, store)
        say(f"FLUSH {batch}")
        store.flush()
        say(f"ACK {batch} {_model.digest(_model.snapshot_model(model))}")
        rng = np.random.default_rng([seed, batch, 99])
        if rng.random() < COMPACT_CHANCE:
            say(f"COMPACT {batch}")
            store.compact(grace=float(rng.choice([0.0, 0.0, 600.0])))
            say(f"COMPACTED {batch}")
        if crash_point == "orphan-remove":  # a crashed writer's leftover to remove
            _plant_orphan(path, batch)
        if crash_point == "orphan-remove" or (orphan_sweeps and rng.random() < 0.1):
            say(f"SWEEP {batch}")
            store.verify(repair=True)
            say(f"SWEPT {batch}")
        batch += 1
    say("END")


def _plant_orphan(path: str, batch: int) -> None:
    """A crashed writer's leftovers: a segment and a catalog part no root references."""
    import uuid

    for key, magic in ((f"segments/{batch:08d}-{uuid.uuid4().hex}.seg", b"ATLSEG02"),
                       (f"catalog/{batch:08d}-{uuid.uuid4().hex}.cat", b"ATLCAT02")):
        os.makedirs(os.path.dirname(os.path.join(path, key)), exist_ok=True)
        with open(os.path.join(path, key), "wb") as f:
            f.write(magic + b" half-written by a writer that crashed")


def open_store(location, **kwargs) -> "atlas.Atlas":
    """A local path, or (url, options) for an object store."""
    if isinstance(location, (list, tuple)):
        url, options = location
        return atlas.Atlas.open(url, **options, **kwargs)
    return atlas.Atlas.open(location, **kwargs)


def _wait_until(start_at: float) -> None:
    while time.time() < start_at:
        time.sleep(0.001)


def concurrent_writer(location, prefix: str, batches: int, log_path: str,
                      compact_every: int = 0, seed: int = 0, start_at: float = 0.0,
                      flush_each: bool = False) -> None:
    """Commit ``batches`` batches of two new datasets ``<prefix><i>_<j>`` to a store other
    writers commit to as well, in one flush per batch or (``flush_each``) one per dataset, which
    makes many small files for the size-tiered merge. A flush that finds another writer's
    commit re-applies its own on top (``REBASED i``); a ConflictError (both changed one thing,
    which these disjoint writers never do) means reopen, redo what did not commit, try again.
    ``ACK i`` follows each batch that committed, ``CONFLICT i`` each retry, ``MERGED i`` a
    flush that merged files."""
    say = _Log(log_path)
    store = open_store(location)
    _wait_until(start_at)
    for i in range(batches):
        while True:
            try:
                for j in range(2):
                    if f"{prefix}{i}_{j}" not in store:  # a redo skips what committed
                        write_owned(store, f"{prefix}{i}_{j}", seed)
                    if flush_each or j == 1:
                        _flush_logging_merges(store, say, i)
                break
            except atlas.ConflictError:
                say(f"CONFLICT {i}")
                store = open_store(location)
        say(f"ACK {i}")
        if compact_every and i % compact_every == compact_every - 1:
            while True:
                try:
                    store.compact()
                    say(f"COMPACTED {i}")
                    break
                except atlas.ConflictError:
                    say(f"CONFLICT compact {i}")
                    store = open_store(location)
    say("END")


def _flush_logging_merges(store, say, i: int) -> None:
    started, before = time.time(), store._root.generation
    store.flush()
    if store._root.generation > before + 1:  # others committed first: re-applied on theirs
        say(f"REBASED {i}")
    if any(since >= started for _key, since, _gen in store._root.retired):  # it retired files
        say(f"MERGED {i}")


def sweeper(location, log_path: str, stop_path: str) -> None:
    """verify(repair=True) again and again while writers run: it must find the store sound and
    never remove a file a writer still needs (the writers' final check would miss it)."""
    say = _Log(log_path)
    while not os.path.exists(stop_path):
        try:
            report = open_store(location).verify(repair=True)
            say(f"SWEPT {len(report.removed)}" if report.ok else f"ERROR {report.problems}")
        except Exception as err:  # noqa: BLE001 - every failure is a finding, logged
            say(f"ERROR {type(err).__name__}: {err}")
    say("END")


def owned_content(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """What ``write_owned`` writes to dataset ``name``: derived from the name alone."""
    rng = np.random.default_rng([seed, *name.encode()])
    return {"v": rng.normal(size=(6, 5)).astype(np.float32),
            "n": rng.integers(-100, 100, size=17).astype(np.int64)}


def write_owned(store, name: str, seed: int = 0) -> None:
    content = owned_content(name, seed)
    ds = store.create_dataset(name)
    ds.define_array("v", "float32", ["y", "x"], [6, 5], [4, 2], float("nan"))
    ds.define_array("n", "int64", ["t"], [17], [5], -1)
    ds.write_array("v", [0, 0], content["v"])
    ds.write_array("n", [0], content["n"])
    ds.set_attribute("owner", name)


def check_owned(store, name: str, seed: int = 0) -> None:
    """Raise AssertionError unless dataset ``name`` holds exactly what write_owned wrote."""
    ds = store.open_dataset(name)
    content = owned_content(name, seed)
    assert ds.get_attribute("owner") == name, f"{name}: attribute missing"
    for array, expected in content.items():
        got = ds.read_array(array)
        assert got is not None and np.array_equal(got, expected), f"{name}/{array} differs"


def reader(location, log_path: str, stop_path: str, prefixes: tuple[str, ...] = (),
           hold: bool = False, seed: int = 0) -> None:
    """Read every dataset again and again until ``stop_path`` exists; log ``OK <n datasets>``
    per pass and ``ERROR <text>`` on anything wrong. ``hold``: read the same handle (the same
    manifest) again after a pause, as a slow reader that a commit or compaction overtakes."""
    say = _Log(log_path)
    while not os.path.exists(stop_path):
        try:
            store = open_store(location, read_only=True)
            names = [n for n in store.list_datasets() if n.startswith(prefixes)]
            for _ in range(2 if hold else 1):
                for name in names:
                    check_owned(store, name, seed)
                if hold:
                    time.sleep(0.05)
            say(f"OK {len(names)}")
        except Exception as err:  # noqa: BLE001 - every failure is a finding, logged
            say(f"ERROR {type(err).__name__}: {err}")
    say("END")


def warm() -> None:
    """Load every compiled kernel once (numba's cache), so forked children start warm."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")
        store = atlas.Atlas.create(path)
        model = _model.Model()
        for b in range(3):
            _model.run_batch(1, b, model, store)
            store.flush()
        store.compact(grace=0.0)
        _model.snapshot_store(atlas.Atlas.open(path))
        write_owned(store, "w")
        store.flush()
        check_owned(atlas.Atlas.open(path), "w")


if __name__ == "__main__":  # the crash writer as a plain script
    if len(sys.argv) not in (4, 6):
        sys.exit("usage: _writer.py STORE SEED LOG [CRASH_POINT NTH]")
    point = sys.argv[4] if len(sys.argv) == 6 else None
    crash_writer(sys.argv[1], int(sys.argv[2]), sys.argv[3], point,
                 int(sys.argv[5]) if point else 1)
