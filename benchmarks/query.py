"""Queries over the collection (issue 15): ``select`` and ``catalog`` against pyarrow on Parquet.

The store is ``scale``'s profile collection (per dataset ``depth``, ``temp``, ``sal``, ``oxy``,
``chl``: 100 float32; ``lat``, ``lon``: 0-D float64; attributes ``platform`` a string, ``cycle``
an int, ``time`` a timestamp) at N = 10^4, 10^5, 10^6. A child process builds it once per run
and N: the arrays with the stacked write (``Atlas.write_array_across_stacked``), the attributes
through the per-dataset API (there is no bulk attribute write), one flush. The same child writes
the peer: one Parquet file with a row per dataset holding what ``catalog()`` gives (the name, the
3 attributes, and per array dtype, shape, nulls, valid, min, max, computed with numpy from the
generated values; ``temp.max`` is the column ``temp_max``), and keeps those numpy columns as the
reference every result is checked against.

Timed side by side in this process (atlas imported, interleaved rounds, medians), at each N:

- ``select, fresh handle``: ``Atlas.open`` + ``select("temp.max > 25 and -10 < lat.min < 10")``
  against ``parquet``: ``pq.read_table`` of ``name``, ``temp_max``, ``lat_min`` + a
  ``pyarrow.compute`` filter (``temp_max > 25 and -10 < lat_min < 10``) + the names of the
  matching rows as a Python list;
- ``select, warm handle``: the same ``select`` again on one handle, against the same read through
  a ``pq.ParquetFile`` opened once (``parquet (file open)``);
- ``catalog 10 columns``: ``platform``, ``cycle``, ``time``, ``temp.min``, ``temp.max``,
  ``temp.nulls``, ``lat.min``, ``lon.min``, ``sal.max``, ``oxy.max``: ``catalog(columns=...)``
  of the 10 against pyarrow reading the 10 + name into a pandas DataFrame indexed by name
  (``parquet (pandas)``, the target's peer) and into an Arrow table (``parquet (arrow)``); fresh
  handle and warm (``parquet (pandas, file open)``);
- ``catalog all columns, fresh handle``: ``catalog()`` (45 columns) against every column of the
  file into pandas and into Arrow;
- ``peak RSS above imports``: one child process per query, system and round that imports
  ``pandas`` and atlas (or ``pyarrow.parquet``/``pyarrow.compute``), takes its RSS, runs the
  query once on a fresh handle / a fresh ``read_table``, and reports its peak RSS (``VmHWM``) less
  that RSS: the memory the query itself took, whatever was allocated and freed on the way;
- ``bytes on disk``: the store's catalog (its metadata files), the whole store, the Parquet file.

Every result is checked: the names of ``select`` (every system, warm and fresh, and every RSS
child) equal the numpy reference's, and every catalog value (index, attributes, statistics,
dtype and shape) equals the reference. Ratios are peer / atlas at the same N (< 1: the peer is
faster).

    python -m benchmarks.query                    # N = 10^4, 10^5, 10^6
    python -m benchmarks.query --sizes 10000,100000
    python -m benchmarks.query --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import RawArray, dataset_names
from benchmarks.peers import columnar
from benchmarks.scale import (
    BLOCK,
    DEPTH,
    PROFILES,
    SCALARS,
    profile_block,
    same_n_ratios,
    split_system,
    store_bytes,
)

WORKLOAD = "query"
SUBJECT = "atlas"
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000,)
RSS_REPEATS = 3
ATTRIBUTES = ("platform", "cycle", "time")
ARRAYS = (*PROFILES, *SCALARS)
STATS = ("dtype", "shape", "nulls", "valid", "min", "max")
WHERE = "temp.max > 25 and -10 < lat.min < 10"
WHERE_COLUMNS = ("temp.max", "lat.min")
TEN = ("platform", "cycle", "time", "temp.min", "temp.max", "temp.nulls", "lat.min", "lon.min",
       "sal.max", "oxy.max")
NAME = "name"
WRITE_ROWS = 100_000  # datasets per stacked write call while building
STORE_DIR, PARQUET_FILE, REFERENCE_FILE = "atlas", "catalog.parquet", "reference.npz"

SELECT, CATALOG_10, CATALOG_ALL = "select", "catalog 10 columns", "catalog all columns"
QUERIES = (SELECT, CATALOG_10, CATALOG_ALL)
PARQUET = "parquet"
PARQUET_OPEN = "parquet (file open)"
PARQUET_PANDAS = "parquet (pandas)"
PARQUET_ARROW = "parquet (arrow)"
PARQUET_PANDAS_OPEN = "parquet (pandas, file open)"
RSS_PHASE = "peak RSS above imports: {}"
BASE_PHASE = "RSS after the imports"
SIZE_PHASE = "bytes on disk"


def all_columns() -> list[str]:
    """Every column of the full catalog, in ``catalog()``'s order (attributes as given here,
    arrays sorted by name)."""
    return [*ATTRIBUTES, *(f"{a}.{s}" for a in sorted(ARRAYS) for s in STATS)]


def parquet_name(column: str) -> str:
    """The Parquet column of a catalog column: ``temp.max`` -> ``temp_max`` (a dot would read
    as a nested field to pyarrow)."""
    return column.replace(".", "_")


# --- the data and its reference -------------------------------------------------------------------


def expected_dtype(array: str) -> str:
    return "float32" if array in PROFILES else "float64"


def expected_shape(array: str) -> tuple[int, ...]:
    return (DEPTH,) if array in PROFILES else ()


def block_stats(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The numeric catalog columns of one block of generated datasets, computed with numpy:
    per array nulls (NaN cells, the fill value), valid cells, min and max over valid cells."""
    out: dict[str, np.ndarray] = {}
    for array in ARRAYS:
        values = arrays[array].reshape(len(arrays[array]), -1)
        nulls = np.isnan(values).sum(axis=1)
        out[f"{array}.nulls"] = nulls.astype(np.int64)
        out[f"{array}.valid"] = (values.shape[1] - nulls).astype(np.int64)
        with np.errstate(invalid="ignore"):
            out[f"{array}.min"] = np.nanmin(values, axis=1).astype(np.float64)
            out[f"{array}.max"] = np.nanmax(values, axis=1).astype(np.float64)
    out["platform"] = arrays["platform"].astype(str)
    out["cycle"] = arrays["cycle"].astype(np.int64)
    out["time"] = arrays["time"].astype("M8[ns]")
    return out


def iter_blocks(n: int, rows: int = WRITE_ROWS):
    """(first dataset, arrays of ``scale``'s generator) for datasets 0 ... n-1, ``rows`` at a
    time (dataset i has the same values whatever n)."""
    for first in range(0, n, rows):
        count = min(rows, n - first)
        parts = []
        for block in range(first // BLOCK, -(-(first + count) // BLOCK)):
            begin = max(first, block * BLOCK) - block * BLOCK
            end = min(first + count, (block + 1) * BLOCK) - block * BLOCK
            parts.append({k: v[begin:end] for k, v in profile_block(block).items()})
        yield first, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def load_reference(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def expected_selection(ref: dict[str, np.ndarray], n: int) -> list[str]:
    """``WHERE`` evaluated with numpy on the reference columns."""
    mask = (ref["temp.max"] > 25) & (-10 < ref["lat.min"]) & (ref["lat.min"] < 10)
    names = dataset_names(n)
    return [names[i] for i in np.flatnonzero(mask).tolist()]


# --- checks ---------------------------------------------------------------------------------------


def _values(result, column: str) -> np.ndarray:
    if hasattr(result, "to_pandas"):  # an Arrow table
        return result.column(column).to_numpy(zero_copy_only=False)
    return result[column].to_numpy()


def check_frame(system: str, result, columns: list[str], ref: dict[str, np.ndarray], n: int,
                parquet: bool) -> None:
    """Every column of a catalog (a DataFrame indexed by name, or an Arrow table with the name
    column) equals the reference: names in creation order, attributes, dtype, shape and
    statistics."""
    if hasattr(result, "to_pandas"):
        names = result.column(NAME).to_pylist()
        got_columns = [c for c in result.column_names if c != NAME]
    else:
        names = result.index.tolist()
        got_columns = list(result.columns)
    wanted = [parquet_name(c) for c in columns] if parquet else list(columns)
    if got_columns != wanted:
        raise AssertionError(f"{system}: columns {got_columns} != {wanted}")
    if names != dataset_names(n):
        raise AssertionError(f"{system}: the rows are not the {n} datasets in creation order")
    for column in columns:
        got = _values(result, parquet_name(column) if parquet else column)
        array, _, stat = column.rpartition(".")
        if stat == "dtype":
            ok = bool((got == expected_dtype(array)).all())
        elif stat == "shape":
            # tuples from atlas, numpy arrays from Parquet lists: tuples of both compare equal
            ok = {tuple(v) for v in got.tolist()} == {expected_shape(array)}
        elif column == "platform":
            ok = got.tolist() == ref[column].tolist()
        else:
            expected = ref[column]
            ok = got.dtype == expected.dtype and np.array_equal(got, expected, equal_nan=(
                expected.dtype.kind == "f"))
        if not ok:
            raise AssertionError(f"{system}: column {column!r} differs from the numpy reference")


def check_names(system: str, names: list[str], expected: list[str]) -> None:
    if names != expected:
        raise AssertionError(f"{system}: select gave {len(names)} names, the numpy reference "
                             f"{len(expected)} (or another order)")


# --- the queries, as each system runs them --------------------------------------------------------


def parquet_condition():
    """``WHERE`` as a pyarrow.compute expression: ``temp_max > 25 and -10 < lat_min < 10``."""
    import pyarrow.compute as pc

    temp_max, lat_min = pc.field("temp_max"), pc.field("lat_min")
    return (temp_max > 25) & (lat_min > -10) & (lat_min < 10)


def atlas_query(query: str, store):
    if query == SELECT:
        return atlas_adapter.select(store, WHERE)
    if query == CATALOG_10:
        return atlas_adapter.catalog_columns(store, list(TEN))
    return atlas_adapter.catalog(store)


def parquet_query(query: str, source, columns: list[str] | None = None):
    """``query`` on the Parquet file ``source`` (a path or a ``ParquetFile``) into pandas;
    ``columns`` (catalog names) overrides the catalog's."""
    if query == SELECT:
        return columnar.select_names(source, [parquet_name(c) for c in WHERE_COLUMNS],
                                     parquet_condition(), NAME)
    if columns is None:
        columns = list(TEN) if query == CATALOG_10 else None
    wanted = None if columns is None else [parquet_name(c) for c in columns]
    return columnar.read_frame(source, wanted, NAME)


def parquet_arrow(source, columns: list[str] | None):
    wanted = None if columns is None else [NAME, *(parquet_name(c) for c in columns)]
    return columnar.read_columns(source, wanted)


# --- child processes (python -m benchmarks.query --child '{...}') ---------------------------------


def child_build(p: dict) -> dict:
    """The atlas store, the Parquet file and the reference of N datasets."""
    n, where = p["n"], Path(p["dir"])
    names = dataset_names(n)
    store = atlas_adapter.create_store(where / STORE_DIR)
    parts: dict[str, list[np.ndarray]] = {}
    seconds = {"attributes": 0.0, "arrays": 0.0}
    for first, arrays in iter_blocks(n):
        block_names = names[first : first + len(arrays["lat"])]
        attributes = {"platform": arrays["platform"].astype(str).tolist(),
                      "cycle": arrays["cycle"].tolist(), "time": list(arrays["time"])}
        begin = time.perf_counter()
        atlas_adapter.create_with_attributes(store, block_names, attributes)
        middle = time.perf_counter()
        atlas_adapter.write_stacked_into(store, block_names, {
            array: RawArray(arrays[array], ("depth",) if array in PROFILES else (),
                            expected_shape(array), float("nan")) for array in ARRAYS})
        seconds["attributes"] += middle - begin
        seconds["arrays"] += time.perf_counter() - middle
        for key, values in block_stats(arrays).items():
            parts.setdefault(key, []).append(values)
    begin = time.perf_counter()
    atlas_adapter.flush(store)
    seconds["flush"] = time.perf_counter() - begin
    del store
    ref = {key: np.concatenate(blocks) for key, blocks in parts.items()}
    np.savez(where / REFERENCE_FILE, **ref)

    import pyarrow as pa

    begin = time.perf_counter()
    columns: dict = {NAME: np.array(names, dtype=object)}
    for column in all_columns():
        array, _, stat = column.rpartition(".")
        if stat == "dtype":
            columns[parquet_name(column)] = pa.array([expected_dtype(array)] * n, pa.string())
        elif stat == "shape":
            columns[parquet_name(column)] = columnar.list_column(expected_shape(array), n)
        elif column == "platform":
            columns[column] = ref[column].astype(object)
        else:
            columns[parquet_name(column)] = ref[column]
    columnar.write_parquet_columns(where / PARQUET_FILE, columns)
    seconds["parquet"] = time.perf_counter() - begin
    whole, metadata = store_bytes(where / STORE_DIR)
    return {"seconds": seconds, "peak_rss": harness.peak_rss(), "store_bytes": whole,
            "catalog_bytes": metadata,
            "parquet_bytes": (where / PARQUET_FILE).stat().st_size,
            "method": atlas_adapter.stacked_write_method()}


def child_rss(p: dict) -> dict:
    """One query on a fresh handle (or a fresh read of the file): the RSS after the imports and
    the peak RSS, so the query's own memory is the difference."""
    import pandas  # noqa: F401 - both systems build DataFrames; imported before the baseline

    where = Path(p["dir"])
    if p["system"] == SUBJECT:
        atlas_adapter.version()  # imports atlas

        def run():
            return atlas_query(p["query"], atlas_adapter.open_store(where / STORE_DIR,
                                                                    read_only=True))
    else:
        import pyarrow.compute
        import pyarrow.parquet  # noqa: F401 - imported before the baseline, like atlas

        def run():
            return parquet_query(p["query"], where / PARQUET_FILE)
    base = harness.current_rss()
    begin = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - begin
    out = {"base_rss": base, "peak_rss": harness.peak_rss(), "seconds": seconds}
    if p["query"] == SELECT:
        out["names"] = result
    else:
        out["shape"] = list(result.shape)
    return out


CHILDREN = {"build": child_build, "rss": child_rss}


def run_child(kind: str, params: dict) -> dict:
    return harness.run_child("benchmarks.query", kind, params)


# --- the workload ---------------------------------------------------------------------------------


class Samples:
    """phase -> "family@N" -> samples."""

    def __init__(self) -> None:
        self.by_phase: dict[str, dict[str, list[float]]] = {}

    def add(self, phase: str, family: str, n: int, value: float) -> None:
        self.by_phase.setdefault(phase, {}).setdefault(f"{family}@{n}", []).append(value)

    def extend(self, phase: str, n: int, timings: dict[str, list[float]]) -> None:
        for family, values in timings.items():
            self.by_phase.setdefault(phase, {})[f"{family}@{n}"] = values


def time_queries(samples: Samples, n: int, where: Path, repeats: int, progress) -> list[str]:
    """Every timed phase at one N; returns the names ``select`` has to give."""
    import pyarrow.parquet as pq

    ref = load_reference(where / REFERENCE_FILE)
    expected = expected_selection(ref, n)
    root, path = where / STORE_DIR, where / PARQUET_FILE
    ten, everything = list(TEN), all_columns()

    def fresh(query: str):
        return lambda: atlas_query(query, atlas_adapter.open_store(root, read_only=True))

    warm_store = atlas_adapter.open_store(root, read_only=True)
    parquet_file = pq.ParquetFile(str(path))

    def frame_check(columns: list[str]):
        def check(system: str, result) -> None:
            check_frame(f"{system}@{n}", result, columns, ref, n, system != SUBJECT)
        return check

    def names_check(system: str, result) -> None:
        check_names(f"{system}@{n}", result, expected)

    phases = {
        f"{SELECT}, fresh handle": ({
            SUBJECT: fresh(SELECT),
            PARQUET: lambda: parquet_query(SELECT, path),
        }, names_check),
        f"{SELECT}, warm handle": ({
            SUBJECT: lambda: atlas_query(SELECT, warm_store),
            PARQUET_OPEN: lambda: parquet_query(SELECT, parquet_file),
        }, names_check),
        f"{CATALOG_10}, fresh handle": ({
            SUBJECT: fresh(CATALOG_10),
            PARQUET_PANDAS: lambda: parquet_query(CATALOG_10, path),
            PARQUET_ARROW: lambda: parquet_arrow(path, ten),
        }, frame_check(ten)),
        f"{CATALOG_10}, warm handle": ({
            SUBJECT: lambda: atlas_query(CATALOG_10, warm_store),
            PARQUET_PANDAS_OPEN: lambda: parquet_query(CATALOG_10, parquet_file),
        }, frame_check(ten)),
        f"{CATALOG_ALL}, fresh handle": ({
            SUBJECT: fresh(CATALOG_ALL),
            PARQUET_PANDAS: lambda: parquet_query(CATALOG_ALL, path),
            PARQUET_ARROW: lambda: parquet_arrow(path, None),
        }, frame_check(everything)),
    }
    for phase, (tasks, check) in phases.items():
        harness.log(f"[query] N={n}: {phase}")
        samples.extend(phase, n, harness.time_interleaved(tasks, repeats=repeats, check=check,
                                                          progress=progress))
    return expected


def measure_memory(samples: Samples, dirs: dict[int, Path], selections: dict[int, list[str]],
                   repeats: int, progress) -> None:
    """A child per (query, system) and round, rounds interleaved over N, order rotated."""
    jobs = [(n, query, system) for n in dirs for query in QUERIES
            for system in (SUBJECT, PARQUET)]
    for round_index in range(repeats):
        for n, query, system in harness.rotated(jobs, round_index):
            got = run_child("rss", {"dir": str(dirs[n]), "query": query, "system": system})
            if query == SELECT:
                check_names(f"{system}@{n} (child)", got["names"], selections[n])
            else:
                columns = len(TEN) if query == CATALOG_10 else len(all_columns())
                if got["shape"] != [n, columns]:
                    raise AssertionError(f"{system}@{n} (child): {query} has shape "
                                         f"{got['shape']}, expected {[n, columns]}")
            family = SUBJECT if system == SUBJECT else PARQUET
            samples.add(RSS_PHASE.format(query), family, n, got["peak_rss"] - got["base_rss"])
            if query == SELECT:
                samples.add(BASE_PHASE, family, n, got["base_rss"])
            if progress:
                progress(f"  {query} {system} N={n} round {round_index + 1}: peak above imports "
                         f"{(got['peak_rss'] - got['base_rss']) / 2**20:.1f} MiB")


def run(args: argparse.Namespace) -> dict:
    if args.sizes:
        sizes = sorted(int(s) for s in args.sizes.split(","))
    else:
        sizes = list(QUICK_SIZES if args.quick else SIZES)
    repeats = args.repeats if args.quick else max(args.repeats, 5)
    rss_repeats = args.rss_repeats if args.rss_repeats is not None else (
        1 if args.quick else RSS_REPEATS)
    progress = harness.progress_printer(args.verbose)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_query")
    harness.log(f"[query] sizes={sizes} workdir={workdir}")
    if not atlas_adapter.has_queries():
        raise SystemExit("this atlas has no Atlas.select / Atlas.catalog (issue 15)")
    samples = Samples()
    dirs = {n: workdir / f"n{n}" for n in sizes}
    builds: dict[str, dict] = {}
    selections: dict[int, list[str]] = {}
    selected: dict[str, int] = {}
    try:
        for n, where in dirs.items():
            harness.log(f"[query] building N={n} (atlas store, Parquet file, numpy reference)")
            where.mkdir(parents=True)
            got = run_child("build", {"dir": str(where), "n": n})
            builds[str(n)] = {"seconds": {k: round(v, 2) for k, v in got["seconds"].items()},
                              "peak_rss_mib": round(got["peak_rss"] / 2**20),
                              "method": got["method"]}
            samples.add(SIZE_PHASE, SUBJECT, n, got["catalog_bytes"])
            samples.add(SIZE_PHASE, "atlas store (with the arrays)", n, got["store_bytes"])
            samples.add(SIZE_PHASE, PARQUET, n, got["parquet_bytes"])
        for n, where in dirs.items():
            selections[n] = time_queries(samples, n, where, repeats, progress)
            selected[str(n)] = len(selections[n])
        harness.log(f"[query] peak RSS of child processes ({rss_repeats} rounds)")
        measure_memory(samples, dirs, selections, rss_repeats, progress)
    finally:
        if args.keep:
            harness.log(f"kept the stores under {workdir}")
        else:
            harness.remove_path(workdir)

    phases = {phase: harness.phase_summary(s) for phase, s in samples.by_phase.items()}
    notes = [
        "ratios are peer median / atlas median at the same N (< 1: the peer is faster)",
        "fresh handle: Atlas.open in the timed call (atlas imported; the files in the page "
        "cache); parquet: pq.read_table in the timed call",
        "catalog 10 columns: catalog(columns=[the 10]) reads only those columns",
        "peak RSS above imports: VmHWM of a child process less its RSS after importing pandas "
        "and atlas (or pyarrow); one query on a fresh handle",
        f"bytes on disk: '{SUBJECT}' is the store's catalog (every file but the data segments)",
    ]
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
            "where": WHERE,
            "parquet where": "temp_max > 25 and -10 < lat_min < 10 (pyarrow.compute)",
            "catalog 10 columns": list(TEN),
            "selected": selected,
            "build": builds,
            "parquet": f"one file, a row per dataset, {len(all_columns())} catalog columns + "
            f"name, {columnar.PARQUET_OPTIONS}, default row groups",
            "repeats": repeats,
            "rss_repeats": rss_repeats,
            "quick": bool(args.quick),
            "verified": "select names of every system (and every RSS child) against numpy on "
            "the generated values; every catalog column of every system against the numpy "
            "reference",
        },
        "versions": {**harness.library_versions(["pyarrow", "pandas"]),
                     "atlas": atlas_adapter.version()},
        "units": {SIZE_PHASE: "bytes", BASE_PHASE: "bytes",
                  **{RSS_PHASE.format(q): "bytes" for q in QUERIES}},
        "phases": phases,
        "notes": notes,
    }
    harness.finish_result(result)
    result["ratios"] = same_n_ratios(phases)
    result["metrics"] = _metrics(phases, sizes)
    result["targets"] = _targets(phases, sizes, args.quick)
    return result


def _median(phases: dict, phase: str, family: str, n: int) -> float | None:
    stats = phases.get(phase, {}).get(f"{family}@{n}")
    return stats["median_s"] if stats else None


def _metrics(phases: dict, sizes: list[int]) -> dict:
    per_dataset = {}
    for query in QUERIES:
        for system, s in phases.get(RSS_PHASE.format(query), {}).items():
            _family, n = split_system(system)
            per_dataset[f"{query} / {system}"] = round(s["median_s"] / n, 1)
    warm_over_fresh = {}
    for query in (SELECT, CATALOG_10):
        for n in sizes:
            warm = _median(phases, f"{query}, warm handle", SUBJECT, n)
            fresh = _median(phases, f"{query}, fresh handle", SUBJECT, n)
            if warm and fresh:
                warm_over_fresh[f"{query}@{n}"] = round(warm / fresh, 2)
    atlas_over_peer = {}
    for phase, peer in ((f"{SELECT}, fresh handle", PARQUET),
                        (f"{SELECT}, warm handle", PARQUET_OPEN),
                        (f"{CATALOG_10}, fresh handle", PARQUET_PANDAS),
                        (f"{CATALOG_10}, warm handle", PARQUET_PANDAS_OPEN),
                        (f"{CATALOG_ALL}, fresh handle", PARQUET_PANDAS)):
        for n in sizes:
            mine, theirs = _median(phases, phase, SUBJECT, n), _median(phases, phase, peer, n)
            if mine and theirs:
                atlas_over_peer[f"{phase} vs {peer}@{n}"] = round(mine / theirs, 2)
    return {"atlas / peer (time)": atlas_over_peer,
            "peak RSS above imports, bytes per dataset": per_dataset,
            "atlas warm / fresh handle": warm_over_fresh}


def _targets(phases: dict, sizes: list[int], quick: bool) -> list[dict]:
    """Issue 15's targets at the largest N of the run (the issue states them at 10^6)."""
    big = max(sizes)
    command = "python -m benchmarks.query" + (" --quick" if quick else "")
    t = harness.target

    def ratio(a, b):
        return a / b if a is not None and b else None

    def m(phase: str, family: str = SUBJECT) -> float | None:
        return _median(phases, phase, family, big)

    select_fresh = f"{SELECT}, fresh handle"
    catalog_fresh = f"{CATALOG_10}, fresh handle"
    rss = RSS_PHASE.format(SELECT)
    return [
        t(15, f"select over 2 columns N={big}, fresh handle: parquet / atlas",
          ratio(m(select_fresh, PARQUET), m(select_fresh)), 1, True, command=command),
        t(15, f"catalog 10 columns N={big}, fresh handle: atlas / parquet (pandas)",
          ratio(m(catalog_fresh), m(catalog_fresh, PARQUET_PANDAS)), 3, False, command=command),
        t(15, f"select N={big}: peak RSS above imports, atlas / parquet (same columns read)",
          ratio(m(rss), m(rss, PARQUET)), 2, False, command=command),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.query", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default=None,
                        help="comma-separated N (default 10000,100000,1000000; quick 2000)")
    parser.add_argument("--rss-repeats", type=int, default=None,
                        help=f"child processes per (query, system, N) for the peak RSS "
                        f"(default {RSS_REPEATS}, quick 1; 0: none)")
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
