"""A million datasets (issue 14): how each cost of a profile collection grows with N.

Every dataset is an ocean profile: ``depth`` and ``temp``/``sal``/``oxy``/``chl`` (100 float32
each, dims ``depth``), ``lat``/``lon`` (0-D float64) and 3 attributes (``platform`` a string,
``cycle`` an int, ``time`` a timestamp). For each N (default 10^3, 10^4, 10^5, 10^6; the values
of dataset i do not depend on N), measured with public API calls only (``_atlas_adapter``):

- ``ingest``: a fresh process writes the N datasets into a new store and flushes once, through
  the per-dataset API (create, define + write per array, set the attributes; generation left
  out) and through the stacked write (``Atlas.write_array_across_stacked`` per array, feature
  detected: without it the per-dataset API, recorded; arrays only, there is no stacked attribute
  write; its names and arrays are made before the clock starts); timed from after ``import
  atlas`` (the first write's Numba load is in); ``writer peak RSS`` of that process (the
  stacked writer holds its N x 7 input arrays). Before each ingest ``os.sync()`` writes out
  what the previous one left dirty, as ``many_small`` does: atlas fsyncs its commit, and on
  ext4 an fsync can wait for other files' pages (at 10^6 the store written before is ~2.5
  GB); then the pages of the stores kept so far are dropped from the page cache
  (``posix_fadvise``): on these VMs an ingest beside 2.5 GB of another's cached store faults
  its memory in slower (the stacked write of 10^6: 5.3-5.9 s beside it, 4.7-5.0 s without, by
  hand), which made the result depend on which method ran first;
- ``store bytes``: the whole store, and its metadata (every file that is not a data segment);
- ``open`` (``Atlas.open``) and ``open+list`` (+ ``list_datasets()``) in this process, interleaved
  with pyarrow reading the same names from one Parquet string column (into a Python list as
  atlas returns them, and as an Arrow array);
- a fresh reader process: the first stacked read of ``temp`` across all N in the process, then
  on a fresh handle (the best of 3, each on a new handle), then warm (the best of 3 reads on one
  handle); the stacked read of ``lat`` (first on that handle, warm). These reads name no
  datasets (``read_array_across_stacked("temp")``: every dataset); on another fresh handle
  (before the warm reads), the same read naming every dataset as
  ``list_datasets()`` lists them (which first makes the N names Python strings);
  ``reader peak RSS`` after open + list, after the reads, and the catalog's share (peak after
  open + list less the RSS after the imports);
- ``append one + flush`` and ``delete one + flush`` on a fresh handle: time and bytes written
  (from the store directory before and after: new or replaced files whole, grown files by their
  growth, files rewritten in place whole);
- at one N (``--fragment-n``, default 10^4): after ``--flushes`` one-dataset flushes (default
  1,000), a fresh-handle stacked read of ``temp`` against the same on a copy of that store
  after ``compact()``: both in one new process (after one untimed read of each there),
  alternating from one round to the next (``FRAGMENT_ROUNDS`` each, the order rotated); the
  warm reads of both are in ``params``.

The chart draws each cost against N on log-log axes. Ratios in the tables are peer / atlas at
the same N; the growth of each atlas cost from the smallest to the largest N is in the metrics.

    python -m benchmarks.scale                         # N = 10^3 ... 10^6
    python -m benchmarks.scale --sizes 1000,10000,100000
    python -m benchmarks.scale --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import (
    TIME_ORIGIN,
    RawArray,
    RawDataset,
    Sample,
    dataset_name,
    dataset_names,
)
from benchmarks.peers import columnar

WORKLOAD = "scale"
SUBJECT = "atlas"
DEPTH = 100
PROFILES = ("depth", "temp", "sal", "oxy", "chl")
SCALARS = ("lat", "lon")
SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (200, 1_000)
INGEST_ONCE_FROM = 1_000_000  # N at or above which the ingests run once unless told otherwise
FRAGMENT_N = 10_000
FRAGMENT_FLUSHES = 1_000
QUICK_FLUSHES = 30
BLOCK = 10_000  # datasets generated per random stream
WARM_READS = 3  # a warm read is the best of this many on one handle
FRAGMENT_PHASE = "fresh stacked read temp, many flushes vs compacted"
FRAGMENT_ROUNDS = 9  # fresh reads of each store, interleaved: one is ~10 ms, noisy here
SEED = 20241407
PER_DATASET = "per-dataset API"
STACKED = "stacked write"
PARQUET_LIST = "parquet names (to list)"
PARQUET_ARROW = "parquet names (arrow)"
# the raw bytes of one dataset's arrays: what an append commit has to write at the least
DATASET_BYTES = len(PROFILES) * DEPTH * 4 + len(SCALARS) * 8


# --- data ---------------------------------------------------------------------------------------


def profile_block(block: int) -> dict[str, np.ndarray]:
    """Datasets ``block * BLOCK`` ... ``+ BLOCK - 1``: every array stacked, plus the attributes
    as arrays (``platform``, ``cycle``, ``time``)."""

    def draw(stream: int, how: str, *args, shape=(BLOCK, 1)):
        return getattr(np.random.default_rng([SEED, block, stream]), how)(*args, size=shape)

    levels = np.linspace(0.0, 2000.0, DEPTH)
    depth = levels * draw(0, "uniform", 0.98, 1.02)
    surface = draw(1, "uniform", 5.0, 28.0)
    d0 = draw(2, "uniform", 50.0, 300.0)
    width = draw(3, "uniform", 40.0, 120.0)
    shape = (BLOCK, DEPTH)
    index = np.arange(block * BLOCK, (block + 1) * BLOCK)
    arrays = {
        "depth": depth,
        "temp": 2.0 + (surface - 2.0) / (1.0 + np.exp((depth - d0) / width))
        + draw(4, "normal", 0.0, 0.05, shape=shape),
        "sal": 34.5 + 0.5 * np.tanh((depth - d0) / width) + draw(5, "normal", 0.0, 0.01,
                                                                  shape=shape),
        "oxy": 200.0 + 50.0 * np.exp(-depth / 500.0) + draw(6, "normal", 0.0, 1.0, shape=shape),
        "chl": np.abs(0.5 * np.exp(-(((depth - 60.0) / 30.0) ** 2))
                      + draw(7, "normal", 0.0, 0.01, shape=shape)),
    }
    out = {name: values.astype(np.float32) for name, values in arrays.items()}
    out["lat"] = draw(8, "uniform", -80.0, 80.0, shape=(BLOCK,))
    out["lon"] = draw(9, "uniform", -180.0, 180.0, shape=(BLOCK,))
    out["platform"] = 6_900_000 + index // 250
    out["cycle"] = index % 250 + 1
    out["time"] = TIME_ORIGIN + index * np.timedelta64(6, "h")
    return out


def _blocks(first: int, count: int) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """(offset into the range, rows, arrays sliced to those rows) for the datasets
    ``first`` ... ``first + count - 1``, block by block."""
    position = first
    while position < first + count:
        block, start = divmod(position, BLOCK)
        rows = min(BLOCK - start, first + count - position)
        arrays = profile_block(block)
        yield position - first, rows, {k: v[start : start + rows] for k, v in arrays.items()}
        position += rows


def iter_samples(first: int, count: int) -> Iterator[Sample]:
    """Datasets ``first`` ... ``first + count - 1`` as :class:`Sample` for the per-dataset API."""
    for offset, rows, arrays in _blocks(first, count):
        for j in range(rows):
            data_vars = {
                name: RawArray(arrays[name][j], ("depth",), (DEPTH,), float("nan"))
                for name in PROFILES
            }
            for name in SCALARS:
                data_vars[name] = RawArray(arrays[name][j, ...], (), (), float("nan"))
            attrs = {"platform": str(arrays["platform"][j]), "cycle": int(arrays["cycle"][j]),
                     "time": arrays["time"][j]}
            index = first + offset + j
            yield Sample(dataset_name(index), index, RawDataset({}, data_vars, attrs))


def stacked_arrays(n: int) -> dict[str, RawArray]:
    """The arrays of datasets 0 ... n-1 stacked, as :func:`_atlas_adapter.write_stacked` takes."""
    out = {name: np.empty((n, DEPTH), np.float32) for name in PROFILES}
    out.update({name: np.empty(n, np.float64) for name in SCALARS})
    for offset, rows, arrays in _blocks(0, n):
        for name, values in out.items():
            values[offset : offset + rows] = arrays[name]
    return {
        name: RawArray(values, ("depth",) if values.ndim == 2 else (),
                       (DEPTH,) if values.ndim == 2 else (), float("nan"))
        for name, values in out.items()
    }


def check_stacked(array: str, got: np.ndarray, n: int) -> None:
    """``got`` is ``array`` of datasets 0 ... n-1 as the generator made them."""
    expected_shape = (n, DEPTH) if array in PROFILES else (n,)
    if got.shape != expected_shape:
        raise AssertionError(f"stacked {array!r} has shape {got.shape}, expected {expected_shape}")
    for offset, rows, arrays in _blocks(0, n):
        if not np.array_equal(got[offset : offset + rows], arrays[array], equal_nan=True):
            raise AssertionError(f"stacked {array!r} differs from the generator in datasets "
                                 f"{offset} ... {offset + rows - 1}")


def check_names(names: list[str], n: int) -> None:
    if names != dataset_names(n):
        raise AssertionError(f"list_datasets() gave {len(names)} names, not the {n} written "
                             "in order")


# --- the store on disk --------------------------------------------------------------------------


def file_states(path: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``path``: relative path -> (inode, size, mtime_ns)."""
    states = {}
    for folder, _dirs, files in os.walk(path):
        for name in files:
            full = Path(folder) / name
            st = full.stat()
            states[full.relative_to(path).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return states


def bytes_written(before: dict, after: dict) -> int:
    """Bytes a commit wrote, from :func:`file_states` before and after: new or replaced files
    (new inode) whole, files grown in place by their growth, rewritten in place whole."""
    total = 0
    for rel, (inode, size, mtime) in after.items():
        old = before.get(rel)
        if old is None or old[0] != inode:
            total += size
        elif size > old[1]:
            total += size - old[1]
        elif (size, mtime) != old[1:]:
            total += size
    return total


def store_bytes(root: Path) -> tuple[int, int]:
    """(whole store, metadata: every file that is not a data segment) in bytes."""
    states = file_states(atlas_adapter.store_path(root))
    whole = sum(size for _ino, size, _mtime in states.values())
    metadata = sum(size for rel, (_ino, size, _m) in states.items()
                   if not atlas_adapter.is_data_file(rel))
    return whole, metadata


# --- child processes (python -m benchmarks.scale --child '{...}') --------------------------------


def child_ingest(p: dict) -> dict:
    root, n = Path(p["root"]), p["n"]
    atlas_adapter.version()  # imports atlas before the clock starts (as the reader's child)
    base = harness.current_rss()
    if p["method"] == PER_DATASET:
        samples = harness.TimedIterator(iter_samples(0, n))
        begin = time.perf_counter()
        atlas_adapter.write(samples, root)
        seconds = time.perf_counter() - begin - samples.seconds
        method, input_bytes = PER_DATASET, 0
    else:
        arrays = stacked_arrays(n)
        names = dataset_names(n)
        input_bytes = sum(a.data.nbytes for a in arrays.values())
        begin = time.perf_counter()
        method = atlas_adapter.write_stacked(root, names, arrays)
        seconds = time.perf_counter() - begin
        del arrays
    out = {"seconds": seconds, "peak_rss": harness.peak_rss(), "base_rss": base,
           "method": method, "input_bytes": input_bytes}
    if p["verify"]:
        store = atlas_adapter.open_store(root, read_only=True)
        check_names(atlas_adapter.list_datasets(store), n)
        for array in ("temp", "lat"):
            check_stacked(array, atlas_adapter.read_stacked_all(store, array), n)
    return out


def child_reader(p: dict) -> dict:
    root, n = Path(p["root"]), p["n"]
    atlas_adapter.version()  # imports atlas: the catalog's share is what open + list add to it
    base = harness.current_rss()
    out: dict = {}

    def timed(key: str, fn: Callable[[], object], best_of: int = 1):
        """Time ``fn``; with ``best_of`` the fastest of that many calls (a warm read's steady
        state: a one-off cost such as loading the Numba kernels mid-way stays out)."""
        seconds = []
        for _ in range(best_of):
            result = None
            gc.collect()
            begin = time.perf_counter()
            result = fn()
            seconds.append(time.perf_counter() - begin)
        out[key] = min(seconds)
        return result

    store = atlas_adapter.open_store(root, read_only=True)
    names = atlas_adapter.list_datasets(store)
    out["rss after open+list"] = harness.peak_rss()
    out["catalog"] = out["rss after open+list"] - base
    temp = timed("temp first, fresh process",
                 lambda: atlas_adapter.read_stacked_all(store, "temp"))
    del temp, store
    # the best of WARM_READS reads, each on a new handle, as the warm read is the best of as
    # many on one handle: one sample against a best of 3 would compare noise as much as reads
    best = float("inf")
    for _ in range(WARM_READS):
        store = atlas_adapter.open_store(root, read_only=True)
        temp = timed("temp first, fresh handle",
                     lambda: atlas_adapter.read_stacked_all(store, "temp"))
        best = min(best, out["temp first, fresh handle"])
        del temp, store
    out["temp first, fresh handle"] = best
    store = atlas_adapter.open_store(root, read_only=True)
    temp = timed("temp first, fresh handle, listed",
                 lambda: atlas_adapter.read_stacked_listed(store, "temp"))
    del temp
    temp = timed("temp warm", lambda: atlas_adapter.read_stacked_all(store, "temp"), WARM_READS)
    lat = timed("lat first", lambda: atlas_adapter.read_stacked_all(store, "lat"))
    lat = timed("lat warm", lambda: atlas_adapter.read_stacked_all(store, "lat"), WARM_READS)
    out["rss after the reads"] = harness.peak_rss()
    check_names(names, n)
    check_stacked("temp", temp, n)
    check_stacked("lat", lat, n)
    return out


def child_fresh_reads(p: dict) -> dict:
    """Stacked reads of ``temp`` on each store of ``roots``, each on a new handle (after one
    untimed read of each that loads what a process loads once), ``reads`` rounds alternating
    between the stores, the order rotated every round; then the best of ``WARM_READS`` on the
    last handle of each."""
    roots, n = [Path(r) for r in p["roots"]], p["n"]
    for root in roots:
        atlas_adapter.read_stacked_all(atlas_adapter.open_store(root, read_only=True), "temp")

    def timed_read(handle) -> float:
        gc.collect()
        begin = time.perf_counter()
        temp = atlas_adapter.read_stacked_all(handle, "temp")
        seconds = time.perf_counter() - begin
        check_stacked("temp", temp, n)
        return seconds

    fresh: list[list[float]] = [[] for _ in roots]
    handles: list = [None] * len(roots)
    for round_index in range(p["reads"]):
        order = list(range(len(roots)))
        if round_index % 2:
            order.reverse()
        for i in order:
            handles[i] = atlas_adapter.open_store(roots[i], read_only=True)
            fresh[i].append(timed_read(handles[i]))
    warm = [min(timed_read(handle) for _ in range(WARM_READS)) for handle in handles]
    return {"fresh": fresh, "warm": warm}


CHILDREN = {"ingest": child_ingest, "reader": child_reader, "fresh_reads": child_fresh_reads}


def run_child(kind: str, params: dict) -> dict:
    return harness.run_child("benchmarks.scale", kind, params)


# --- the workload -------------------------------------------------------------------------------


class Samples:
    """phase -> "family@N" -> samples."""

    def __init__(self) -> None:
        self.by_phase: dict[str, dict[str, list[float]]] = {}

    def add(self, phase: str, family: str, n: int, value: float) -> None:
        self.by_phase.setdefault(phase, {}).setdefault(f"{family}@{n}", []).append(value)

    def extend(self, phase: str, timings: dict[str, list[float]]) -> None:
        self.by_phase.setdefault(phase, {}).update(timings)


def ingest(samples: Samples, workdir: Path, sizes: list[int], rounds: dict[int, int],
           progress) -> tuple[dict[int, Path], dict[str, str]]:
    """Every ingest, interleaved; returns the per-dataset store kept for each N (round 0's)."""
    kept: dict[int, Path] = {}
    methods: dict[str, str] = {}
    for round_index in range(max(rounds.values())):
        for n in harness.rotated(sizes, round_index):
            if round_index >= rounds[n]:
                continue
            for method in harness.rotated([PER_DATASET, STACKED], round_index):
                keep = round_index == 0 and method == PER_DATASET
                root = workdir / f"n{n}" / ("store" if keep else f"ingest-{round_index}")
                verify = round_index == 0 and method == STACKED
                os.sync()  # the previous ingest's pages: not this one's to write out
                for stored in kept.values():  # nor its memory to work beside (see the docstring)
                    harness.drop_cached(stored)
                got = run_child("ingest", {"root": str(root), "n": n, "method": method,
                                           "verify": verify})
                methods[method] = got["method"]
                samples.add("ingest", method, n, got["seconds"])
                samples.add("writer peak RSS", method, n, got["peak_rss"])
                if round_index == 0:
                    whole, metadata = store_bytes(root)
                    suffix = "" if method == PER_DATASET else f" ({STACKED})"
                    samples.add("store bytes", f"whole store{suffix}", n, whole)
                    samples.add("store bytes", f"metadata{suffix}", n, metadata)
                if keep:
                    kept[n] = root
                else:
                    harness.remove_path(root)
                if progress:
                    progress(f"  ingest {method:<16s} N={n} round {round_index + 1}: "
                             f"{got['seconds']:.3f} s, peak {got['peak_rss'] / 2**20:.0f} MiB")
    return kept, methods


def open_and_list(samples: Samples, stores: dict[int, Path], workdir: Path, repeats: int,
                  progress) -> None:
    """Atlas.open and open + list_datasets() against pyarrow reading the names from Parquet."""
    import pyarrow.parquet as pq

    for n, root in stores.items():
        names = dataset_names(n)
        parquet = workdir / f"n{n}" / "names.parquet"
        columnar.write_parquet(parquet, {"name": np.array(names, dtype=object)})

        def check(system: str, result) -> None:
            got = result if isinstance(result, list) else result.to_pylist()
            check_names(got, n)

        def read_column():
            return pq.read_table(str(parquet), columns=["name"]).column("name")

        tasks = {
            f"{SUBJECT}@{n}": lambda: atlas_adapter.list_datasets(
                atlas_adapter.open_store(root, read_only=True)),
            f"{PARQUET_LIST}@{n}": lambda: read_column().to_pylist(),
            f"{PARQUET_ARROW}@{n}": read_column,
        }
        samples.extend("open+list", harness.time_interleaved(
            tasks, repeats=repeats, check=check, progress=progress))
        samples.extend("open", harness.time_interleaved(
            {f"{SUBJECT}@{n}": lambda: atlas_adapter.open_store(root, read_only=True)},
            repeats=repeats, progress=progress))


READER_PHASES = {
    "temp first, fresh process": "first stacked read temp, fresh process",
    "temp first, fresh handle": "first stacked read temp, fresh handle",
    "temp first, fresh handle, listed": "first stacked read temp, fresh handle, names from "
                                        "list_datasets()",
    "temp warm": "stacked read temp, warm",
    "lat first": "stacked read lat, first",
    "lat warm": "stacked read lat, warm",
}
RSS_FAMILIES = ("rss after open+list", "rss after the reads", "catalog")


def readers(samples: Samples, stores: dict[int, Path], repeats: int, progress) -> None:
    for round_index in range(repeats):
        for n in harness.rotated(list(stores), round_index):
            got = run_child("reader", {"root": str(stores[n]), "n": n})
            for key, phase in READER_PHASES.items():
                samples.add(phase, SUBJECT, n, got[key])
            for family in RSS_FAMILIES:
                samples.add("reader peak RSS", family.removeprefix("rss "), n, got[family])
            if progress:
                progress(f"  reader N={n} round {round_index + 1}: {got}")


def mutations(samples: Samples, stores: dict[int, Path], repeats: int, progress) -> None:
    """Append one dataset + flush, then delete it + flush, on a fresh handle each round."""
    for round_index in range(repeats):
        for n in harness.rotated(list(stores), round_index):
            root = stores[n]
            directory = atlas_adapter.store_path(root)
            sample = next(iter_samples(n + round_index, 1))
            store = atlas_adapter.open_store(root)
            for phase, change in (
                ("append one + flush", lambda: atlas_adapter.add_dataset(store, sample)),
                ("delete one + flush", lambda: atlas_adapter.delete_dataset(store, sample.name)),
            ):
                before = file_states(directory)
                gc.collect()
                begin = time.perf_counter()
                change()
                atlas_adapter.flush(store)
                seconds = time.perf_counter() - begin
                written = bytes_written(before, file_states(directory))
                samples.add(phase, SUBJECT, n, seconds)
                samples.add(f"{phase}: bytes written", SUBJECT, n, written)
                if progress:
                    progress(f"  {phase} N={n} round {round_index + 1}: {seconds:.4f} s, "
                             f"{written} bytes")


def fragmentation(samples: Samples, root: Path, n: int, flushes: int, repeats: int) -> dict:
    """``flushes`` one-dataset flushes; then fresh stacked reads of that store and of a
    compacted copy of it, interleaved in one child."""
    store = atlas_adapter.open_store(root)
    directory = atlas_adapter.store_path(root)
    flush_s = []
    for i, sample in enumerate(iter_samples(n, flushes)):
        if i == flushes - 1:  # what the last commit writes, with the history of the others
            states = file_states(directory)
        begin = time.perf_counter()
        atlas_adapter.add_dataset(store, sample)
        atlas_adapter.flush(store)
        flush_s.append(time.perf_counter() - begin)
    after = file_states(directory)
    last_bytes = bytes_written(states, after) if flushes else 0
    files_before = len(after)
    opens = []  # what every open pays for the history (the root's size)
    for _ in range(9):
        gc.collect()
        begin = time.perf_counter()
        atlas_adapter.open_store(root, read_only=True)
        opens.append(time.perf_counter() - begin)
    total = n + flushes
    # the compacted store is a copy, so that both are read side by side in one process
    compacted = root.with_name(root.name + "-compacted")
    harness.remove_path(compacted)
    shutil.copytree(root, compacted)
    begin = time.perf_counter()
    atlas_adapter.compact(atlas_adapter.open_store(compacted))
    compact_s = time.perf_counter() - begin
    states = (f"after {flushes} one-dataset flushes", "after compact()")
    got = run_child("fresh_reads", {"roots": [str(root), str(compacted)], "n": total,
                                    "reads": max(repeats, FRAGMENT_ROUNDS)})
    warm: dict[str, float] = {}
    for state, fresh, best in zip(states, got["fresh"], got["warm"]):
        samples.by_phase.setdefault(FRAGMENT_PHASE, {})[f"{state}@{n}"] = fresh
        warm[state] = round(best, 4)
    files_after = len(file_states(atlas_adapter.store_path(compacted)))
    harness.remove_path(compacted)
    return {
        "n": n,
        "flushes": flushes,
        "one-dataset flush, median (s)": round(float(np.median(flush_s)), 5),
        "one-dataset flush, first / last (s)": [round(flush_s[0], 5), round(flush_s[-1], 5)],
        "one-dataset flush, median of the last 100 (s)": round(float(np.median(flush_s[-100:])),
                                                                5),
        "bytes written by the last one-dataset flush": last_bytes,
        "root bytes after the flushes": after.get("manifest.atlas", (0, 0, 0))[1],
        "open after the flushes, median (s)": round(float(np.median(opens)), 5),
        "files in the store before compact()": files_before,
        "files after compact()": files_after,
        "compact() (s)": round(compact_s, 3),
        f"stacked read temp, warm (best of {WARM_READS}, s)": warm,
    }


def run(args: argparse.Namespace) -> dict:
    if args.sizes:
        sizes = sorted(int(s) for s in args.sizes.split(","))
    else:
        sizes = list(QUICK_SIZES if args.quick else SIZES)
    repeats = args.repeats
    if args.ingest_repeats:
        rounds = {n: args.ingest_repeats for n in sizes}
    else:
        rounds = {n: 1 if args.quick or n >= INGEST_ONCE_FROM else repeats for n in sizes}
    if args.flushes is not None:
        flushes = args.flushes
    else:
        flushes = QUICK_FLUSHES if args.quick else FRAGMENT_FLUSHES
    fragment_n = args.fragment_n or (max(sizes) if args.quick else FRAGMENT_N)
    progress = harness.progress_printer(args.verbose)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_scale")
    harness.log(f"[scale] sizes={sizes} workdir={workdir}")
    samples = Samples()
    fragment: dict = {}
    try:
        harness.log(f"[scale] ingest (rounds per N: {rounds})")
        stores, methods = ingest(samples, workdir, sizes, rounds, progress)
        harness.log("[scale] open, open+list against Parquet names")
        open_and_list(samples, stores, workdir, max(repeats, 5) if not args.quick else repeats,
                      progress)
        harness.log(f"[scale] fresh reader processes ({repeats} rounds)")
        readers(samples, stores, repeats, progress)
        harness.log(f"[scale] append one / delete one ({repeats} rounds)")
        mutations(samples, stores, repeats, progress)
        if fragment_n in stores and flushes > 0:
            harness.log(f"[scale] {flushes} one-dataset flushes at N={fragment_n}, then compact")
            fragment = fragmentation(samples, stores[fragment_n], fragment_n, flushes, repeats)
    finally:
        if args.keep:
            harness.log(f"kept stores under {workdir}")
        else:
            harness.remove_path(workdir)

    phases = {phase: harness.phase_summary(s) for phase, s in samples.by_phase.items()}
    notes = [
        "ratios are peer median / atlas median at the same N (< 1: the peer is faster)",
        "stacked write: arrays only (no stacked attribute write); its writer peak RSS "
        "includes the N x 7 input arrays",
        "bytes written: new or replaced files whole, grown files by their growth",
    ]
    if not atlas_adapter.has_stacked_write():
        notes.append(f"stacked write: {atlas_adapter.stacked_write_method()}")
    if any(r == 1 for r in rounds.values()) and not args.quick:
        notes.append(f"ingest rounds per N: {rounds} (a single round is not a median)")
    if args.quick:
        notes.append("quick run: small N, not for reporting")
    result = {
        "workload": WORKLOAD,
        "name": args.name or f"{WORKLOAD}_n{max(sizes)}" + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "chart": "scaling",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "sizes": sizes,
            "dataset": f"{', '.join(PROFILES)}: ({DEPTH},) float32; {', '.join(SCALARS)}: 0-D "
            "float64; attributes platform (str), cycle (int), time (timestamp)",
            "ingest_methods": methods,
            "ingest_rounds": {str(n): r for n, r in rounds.items()},
            "repeats": repeats,
            "fragmentation": fragment,
            "parquet names": f"one string column, {columnar.PARQUET_OPTIONS}, pq.read_table",
            "quick": bool(args.quick),
            "verified": "list_datasets() and the stacked temp/lat of every reader process, the "
            "stacked store once, the fragmented and compacted reads, against the generator",
        },
        "versions": {**harness.library_versions(["pyarrow"]), "atlas": atlas_adapter.version()},
        "units": {"writer peak RSS": "bytes", "store bytes": "bytes", "reader peak RSS": "bytes",
                  "append one + flush: bytes written": "bytes",
                  "delete one + flush: bytes written": "bytes"},
        "phases": phases,
        "notes": notes,
    }
    harness.finish_result(result)
    result["ratios"] = same_n_ratios(phases)
    result["metrics"] = _metrics(phases, sizes)
    result["targets"] = _targets(phases, sizes, fragment, args.quick)
    return result


def split_system(system: str) -> tuple[str, int]:
    """"family@N" -> (family, N)."""
    family, n = system.rsplit("@", 1)
    return family, int(n)


def same_n_ratios(phases: dict) -> dict:
    """Per phase, each non-atlas system's median over atlas's at the same N."""
    ratios: dict = {}
    for phase, stats in phases.items():
        for system, s in stats.items():
            family, n = split_system(system)
            base = stats.get(f"{SUBJECT}@{n}")
            if family != SUBJECT and base and base["median_s"] > 0:
                ratios.setdefault(phase, {})[system] = s["median_s"] / base["median_s"]
    return ratios


def _median(phases: dict, phase: str, family: str, n: int) -> float | None:
    stats = phases.get(phase, {}).get(f"{family}@{n}")
    return stats["median_s"] if stats else None


def _metrics(phases: dict, sizes: list[int]) -> dict:
    small, big = min(sizes), max(sizes)
    growth = {}
    for phase, stats in phases.items():
        for system in stats:
            family, n = split_system(system)
            if n == big and big != small:
                low = _median(phases, phase, family, small)
                if low:
                    growth[f"{phase} / {family}"] = round(stats[system]["median_s"] / low, 2)
    per_s = {
        f"{method}@{n}": round(n / value)
        for method in (PER_DATASET, STACKED)
        for n in sizes
        if (value := _median(phases, "ingest", method, n))
    }
    return {f"growth N={big} / N={small}": growth, "ingest datasets/s": per_s}


def _targets(phases: dict, sizes: list[int], fragment: dict, quick: bool) -> list[dict]:
    """Issue 14's targets, at the largest N of the run (the issue states them at 10^6)."""
    small, big = min(sizes), max(sizes)

    def m(phase: str, family: str = SUBJECT, n: int = big) -> float | None:
        return _median(phases, phase, family, n)

    command = "python -m benchmarks.scale" + (" --quick" if quick else "")
    t = harness.target

    def ratio(a, b):
        return a / b if a is not None and b else None

    per_dataset, stacked = m("ingest", PER_DATASET), m("ingest", STACKED)
    writer = m("writer peak RSS", PER_DATASET)
    catalog = m("reader peak RSS", "catalog")
    fragmented = phases.get(FRAGMENT_PHASE, {})
    frag_ratio = None
    if fragment:
        after = fragmented.get(f"after {fragment['flushes']} one-dataset flushes@{fragment['n']}")
        compacted = fragmented.get(f"after compact()@{fragment['n']}")
        frag_ratio = ratio(after["median_s"], compacted["median_s"])
    append_bytes = m("append one + flush: bytes written")
    return [
        t(14, f"append one + flush, N={big} / N={small}",
          ratio(m("append one + flush"), m("append one + flush", n=small)), 2, False,
          command=command),
        t(14, f"bytes written by a one-dataset commit at N={big}",
          None if append_bytes is None else append_bytes / 1024, 64 + DATASET_BYTES / 1024,
          False, " KiB", command),
        t(14, f"open+list N={big}: parquet names (to list) / atlas",
          ratio(m("open+list", PARQUET_LIST), m("open+list")), 1, True, command=command),
        t(14, f"fresh-handle stacked read of temp / warm, N={big}",
          ratio(m("first stacked read temp, fresh handle"), m("stacked read temp, warm")), 1.5,
          False, command=command),
        t(14, f"per-dataset ingest N={big}: datasets/s",
          big / per_dataset if per_dataset else None, 10_000, True, "/s", command),
        t(14, f"per-dataset ingest N={big}: writer peak RSS",
          None if writer is None else writer / 2**20, 2048, False, " MiB", command),
        t(14, f"stacked ingest N={big}: datasets/s",
          big / stacked if stacked and atlas_adapter.has_stacked_write() else None, 200_000,
          True, "/s", command),
        t(14, f"reader catalog N={big} (peak after open+list above the imports)",
          None if catalog is None else catalog / 2**20, 200, False, " MiB", command),
        t(14, f"fresh stacked read after {fragment.get('flushes')} one-dataset flushes / after "
          f"compact(), N={fragment.get('n')}", frag_ratio, 1.5, False, command=command),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default=None,
                        help="comma-separated N (default 1000,10000,100000,1000000; quick "
                        "200,1000)")
    parser.add_argument("--ingest-repeats", type=int, default=None,
                        help=f"ingest rounds per N (default --repeats, 1 from N={INGEST_ONCE_FROM} "
                        "and in --quick)")
    parser.add_argument("--fragment-n", type=int, default=None,
                        help=f"N of the many-flushes read (default {FRAGMENT_N}; quick: the "
                        "largest N); must be one of --sizes")
    parser.add_argument("--flushes", type=int, default=None,
                        help=f"one-dataset flushes before that read ({FRAGMENT_FLUSHES}, quick "
                        f"{QUICK_FLUSHES}; 0 skips it)")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        params = json.loads(argv[1])
        print(json.dumps(CHILDREN[params.pop("kind")](params)), flush=True)
        return None
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
