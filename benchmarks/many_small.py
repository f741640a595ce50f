"""Many small datasets (issue 13): N profiles of a 100-level ``temp`` and a 0-D ``lat`` each.

Dataset i holds ``temp`` (100 float32, dims ``depth``) and ``lat`` (0-D float64). Two variants
of the values: ``random`` (normal temperatures, uniform latitudes: nothing compresses) and
``smooth`` (a smooth thermocline profile per dataset, a smooth track of latitudes along the
datasets). For each N and variant, side by side in one run (interleaved rounds, medians; the
writes of N <= 10^5 at least ``QUICK_WRITE_ROUNDS`` rounds):

- **write** the N datasets: ``atlas``, the stacked write ``Atlas.write_array_across_stacked`` of
  each array + one flush (feature-detected in ``_atlas_adapter``: without it the per-dataset API,
  and the results say so); ``atlas (per-dataset API)``: create + define + write per dataset, one
  flush (data generation left out); ``zarr`` / ``zarr+zarrs``: one group, a ``(N, 100)`` array
  with chunks ``(1000, 100)`` and a ``(N,)`` array with chunks ``(1000,)``, zstd level 3, each
  written in one call with zarr-python's codec pipeline / the zarrs pipeline; ``tensorstore``: the
  same arrays created and written by TensorStore; ``parquet`` / ``lance``: one table, a row per
  dataset (``temp`` a ``fixed_size_list<float32>[100]``, ``lat`` float64). Before each timed
  write the previous round's output is removed and ``os.sync()`` writes every dirty page out:
  atlas fsyncs what it commits (the others do not), and an fsync can wait for pages another
  system's write left dirty;
- **size on disk** of what each wrote;
- **read temp**, **read lat**: the stacked read of the array across all N into numpy.
  ``atlas``: ``read_array_across_stacked(array)`` (every dataset) on a handle opened before
  (warm); ``atlas (fresh process)``: a new Python process timing ``import atlas`` + open + that
  read; ``zarr`` / ``zarr+zarrs``: ``array[...]`` (arrays opened before); ``tensorstore``:
  ``read()`` into a new array, ``tensorstore (buffer)``: into a buffer reused across reads (both
  on the zarr arrays zarr-python wrote); ``parquet``, ``lance``: one column of the file / dataset
  opened before, converted to numpy.

Every read (the fresh process's included) is checked against the generator, and every written
store is read back once. Ratios are peer time / atlas time (< 1: the peer is faster).

    python -m benchmarks.many_small                       # N = 10^4, 10^5, 10^6, both variants
    python -m benchmarks.many_small --sizes 100000 --variants random
    python -m benchmarks.many_small --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import RawArray, RawDataset, Sample, dataset_names
from benchmarks.peers import columnar, quiet_warnings, tensorstore_zarr, zarr_stacked

WORKLOAD = "many_small"
SUBJECT = "atlas"
FRESH = "atlas (fresh process)"
PER_DATASET = "atlas (per-dataset API)"
DEPTH = 100
ROWS_PER_CHUNK = 1000  # zarr chunks (1000, 100) and (1000,)
ARRAYS = ("temp", "lat")
# writes of up to 10^5 datasets take ~0.1 s, and one system's medians of 3 moved 2x from one
# run to the next here (zarr + zarrs: 56-128 ms at 10^5): such writes get more rounds
QUICK_WRITE_N = 100_000
QUICK_WRITE_ROUNDS = 9
VARIANTS = ("random", "smooth")
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_500,)
TARGET_MIN_N = 100_000  # issue 13 states its targets at N = 10^5 and 10^6
BLOCK = 100_000  # rows generated per random generator (the values do not depend on N)
SEED = 20241306
GROUP = "stacked.zarr"
PARQUET_FILE = "profiles.parquet"
LANCE_DIR = "profiles.lance"
REPO = harness.BENCHMARKS_DIR.parent
VERSIONED = ("tensorstore", "zarrs", "pyarrow", "lance")


# --- data ---------------------------------------------------------------------------------------


def generate(n: int, variant: str) -> dict[str, np.ndarray]:
    """``temp`` ``(n, 100)`` float32 and ``lat`` ``(n,)`` float64, generated in blocks of rows,
    one random stream per block and quantity (row i is the same whatever n)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    temp = np.empty((n, DEPTH), np.float32)
    lat = np.empty(n, np.float64)
    depth = np.linspace(0.0, 2000.0, DEPTH)

    def draw(begin: int, stream: int, how: str, *args, shape: tuple[int, ...]):
        rng = np.random.default_rng([SEED, begin // BLOCK, stream])
        return getattr(rng, how)(*args, size=shape)

    for begin in range(0, n, BLOCK):
        rows = min(BLOCK, n - begin)
        if variant == "random":
            temp[begin : begin + rows] = draw(begin, 0, "normal", 10.0, 4.0, shape=(rows, DEPTH))
            lat[begin : begin + rows] = draw(begin, 1, "uniform", -90.0, 90.0, shape=(rows,))
        else:
            # a surface temperature over a thermocline at depth d0 of some width, 2 degC below
            surface = draw(begin, 0, "uniform", 5.0, 28.0, shape=(rows, 1))
            d0 = draw(begin, 2, "uniform", 50.0, 300.0, shape=(rows, 1))
            width = draw(begin, 3, "uniform", 40.0, 120.0, shape=(rows, 1))
            thermocline = 1.0 + np.exp((depth - d0) / width)
            temp[begin : begin + rows] = 2.0 + (surface - 2.0) / thermocline
            # a smooth track: neighbouring datasets lie close together
            index = np.arange(begin, begin + rows)
            lat[begin : begin + rows] = 60.0 * np.sin(index / 5000.0) + 5.0 * np.sin(index / 37.0)
    return {"temp": temp, "lat": lat}


def atlas_arrays(data: dict[str, np.ndarray]) -> dict[str, RawArray]:
    """The stacked arrays as :func:`_atlas_adapter.write_stacked` takes them (per-dataset dims
    and chunk shape: one chunk per dataset's array, NaN fill)."""
    return {
        "temp": RawArray(data["temp"], ("depth",), (DEPTH,), float("nan")),
        "lat": RawArray(data["lat"], (), (), float("nan")),
    }


def iter_samples(names: list[str], data: dict[str, np.ndarray]) -> Iterator[Sample]:
    """Dataset i as a :class:`Sample` for the per-dataset API (views of the rows, no copies)."""
    temp, lat = data["temp"], data["lat"]
    for i, name in enumerate(names):
        arrays = {
            "temp": RawArray(temp[i], ("depth",), (DEPTH,), float("nan")),
            "lat": RawArray(lat[i, ...], (), (), float("nan")),
        }
        yield Sample(name, i, RawDataset(coords={}, data_vars=arrays, attrs={}))


def zarr_arrays(data: dict[str, np.ndarray]) -> dict[str, tuple]:
    return {
        "temp": (data["temp"], (ROWS_PER_CHUNK, DEPTH), ("dataset", "depth")),
        "lat": (data["lat"], (ROWS_PER_CHUNK,), ("dataset",)),
    }


def check_read(system: str, array: str, got, expected: np.ndarray) -> None:
    got = np.asarray(got)
    if got.shape != expected.shape or got.dtype != expected.dtype:
        raise AssertionError(f"{system} read {array!r} as {got.dtype}{list(got.shape)}, "
                             f"expected {expected.dtype}{list(expected.shape)}")
    if not np.array_equal(got, expected, equal_nan=True):
        raise AssertionError(f"{system} read wrong values of {array!r}")


# --- timing helpers -----------------------------------------------------------------------------


def _clock(fn: Callable[[], object]) -> tuple[float, object]:
    begin = time.perf_counter()
    result = fn()
    return time.perf_counter() - begin, result


def _self_timed(system: str, array: str, run: Callable[[bool], tuple[float, object]],
                expected: np.ndarray) -> Callable[[], float]:
    """A task for ``time_interleaved(self_timed=True)``: ``run(first)`` gives (seconds, result);
    the first result is checked against ``expected``, later ones are dropped."""
    checked = [False]

    def task() -> float:
        seconds, result = run(not checked[0])
        if not checked[0]:
            check_read(system, array, result, expected)
            checked[0] = True
        return seconds

    return task


FRESH_CHILD = """
import json, sys, time
_t0 = time.perf_counter()
import atlas
from pathlib import Path
from benchmarks import _atlas_adapter as adapter
P = json.loads(sys.argv[1])
store = adapter.open_store(Path(P["root"]), read_only=True)
out = adapter.read_stacked_all(store, P["array"])
seconds = time.perf_counter() - _t0
if P["dump"]:
    import numpy as np
    np.save(P["dump"], out)
print(json.dumps({"seconds": seconds}))
"""


def fresh_process_read(root: Path, array: str, dump: Path | None) -> tuple[float, object]:
    """A new Python process: ``import atlas`` + open + the stacked read of ``array``, timed from
    its first line. With ``dump`` it saves the result there (after the clock stops)."""
    params = {"root": str(root), "array": array, "dump": str(dump) if dump else None}
    done = subprocess.run([sys.executable, "-c", FRESH_CHILD, json.dumps(params)], cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"fresh-process read of {array!r} failed:\n{done.stderr[-3000:]}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    result = np.load(dump) if dump else None
    if dump:
        dump.unlink()
    return seconds, result


# --- writes -------------------------------------------------------------------------------------


def write_tasks(roots: dict[str, Path], names: list[str], data: dict[str, np.ndarray],
                per_dataset: bool) -> dict[str, Callable[[], float]]:
    """Every system's write of the N datasets; each task returns its own seconds."""

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        return lambda: _clock(fn)[0]

    def per_dataset_write() -> float:
        samples = harness.TimedIterator(iter_samples(names, data))
        begin = time.perf_counter()
        atlas_adapter.write(samples, roots[PER_DATASET])
        return time.perf_counter() - begin - samples.seconds

    def tensorstore_write() -> None:
        for array, (values, chunks, dims) in zarr_arrays(data).items():
            tensorstore_zarr.write_array(roots["tensorstore"] / GROUP / array, values, chunks,
                                         zarr_stacked.ZSTD_LEVEL, dims=dims)

    tasks = {
        SUBJECT: timed(lambda: atlas_adapter.write_stacked(roots[SUBJECT], names,
                                                           atlas_arrays(data))),
        "zarr": timed(lambda: zarr_stacked.write_arrays(roots["zarr"] / GROUP, zarr_arrays(data),
                                                        "zarr-python")),
        "zarr+zarrs": timed(lambda: zarr_stacked.write_arrays(roots["zarr+zarrs"] / GROUP,
                                                              zarr_arrays(data), "zarrs")),
        "tensorstore": timed(tensorstore_write),
        "parquet": timed(lambda: columnar.write_parquet(_mkdir(roots["parquet"]) / PARQUET_FILE,
                                                        data)),
        "lance": timed(lambda: columnar.write_lance(roots["lance"] / LANCE_DIR, data)),
    }
    if per_dataset:
        tasks[PER_DATASET] = per_dataset_write
    return tasks


def _fresh_start(root: Path) -> None:
    """Before each timed write: its output of the previous round removed, and every dirty page
    written out, so that no write waits for another's data to reach the disk (atlas fsyncs
    what it commits, and an fsync on ext4 can wait for other files' pending writes)."""
    harness.remove_path(root)
    os.sync()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def verify_written(roots: dict[str, Path], data: dict[str, np.ndarray]) -> None:
    """Read back once what the writers whose stores are not timed below wrote."""
    if PER_DATASET in roots:
        store = atlas_adapter.open_store(roots[PER_DATASET], read_only=True)
        for array in ARRAYS:
            check_read(PER_DATASET, array, atlas_adapter.read_stacked_all(store, array),
                       data[array])
    for system in ("zarr+zarrs", "tensorstore"):  # tensorstore wrote the arrays, no group
        arrays = zarr_stacked.open_arrays(roots[system] / GROUP, list(ARRAYS))
        for array in ARRAYS:
            check_read(f"{system} (write)", array, arrays[array][...], data[array])


# --- reads --------------------------------------------------------------------------------------


def read_tasks(roots: dict[str, Path], data: dict[str, np.ndarray], array: str,
               scratch: Path) -> dict[str, Callable[[], float]]:
    """Every system's stacked read of ``array``, self-timed, checked on their first call."""
    store = atlas_adapter.open_store(roots[SUBJECT], read_only=True)
    group = roots["zarr"] / GROUP
    zarr_python = zarr_stacked.open_arrays(group, [array], "zarr-python")[array]
    zarrs = zarr_stacked.open_arrays(group, [array], "zarrs")[array]
    ts_array = tensorstore_zarr.open_array(group / array)
    buffer = np.empty_like(data[array])
    target = tensorstore_zarr.buffer_target(buffer)
    parquet = columnar.ParquetReader(roots["parquet"] / PARQUET_FILE)
    lance = columnar.LanceReader(roots["lance"] / LANCE_DIR)

    def into_buffer():
        tensorstore_zarr.read_into(ts_array, target)
        return buffer

    runs: dict[str, Callable[[bool], tuple[float, object]]] = {
        SUBJECT: lambda first: _clock(lambda: atlas_adapter.read_stacked_all(store, array)),
        FRESH: lambda first: fresh_process_read(roots[SUBJECT], array,
                                                scratch / f"fresh-{array}.npy" if first else None),
        "zarr": lambda first: _clock(lambda: zarr_python[...]),
        "zarr+zarrs": lambda first: _clock(lambda: zarrs[...]),
        "tensorstore": lambda first: _clock(lambda: ts_array.read().result()),
        "tensorstore (buffer)": lambda first: _clock(into_buffer),
        "parquet": lambda first: _clock(lambda: parquet.read(array)),
        "lance": lambda first: _clock(lambda: lance.read(array)),
    }
    return {system: _self_timed(system, array, run, data[array]) for system, run in runs.items()}


# --- the workload -------------------------------------------------------------------------------


def run_one(args: argparse.Namespace, n: int, variant: str) -> dict:
    repeats = args.repeats
    write_repeats = args.write_repeats or (
        1 if args.quick else max(repeats, QUICK_WRITE_ROUNDS) if n <= QUICK_WRITE_N else repeats)
    progress = harness.progress_printer(args.verbose)
    names = dataset_names(n)
    per_dataset = atlas_adapter.has_stacked_write()  # else "atlas" is the per-dataset API already
    workdir = harness.make_workdir(args.workdir, f"atlas_bench_many_small_{variant}")
    harness.log(f"[many_small] {variant} n={n} workdir={workdir}")
    systems = [SUBJECT, "zarr", "zarr+zarrs", "tensorstore", "parquet", "lance"]
    if per_dataset:
        systems.insert(1, PER_DATASET)
    roots = {system: workdir / system.replace(" ", "_").replace("(", "").replace(")", "")
             for system in systems}
    phases: dict[str, dict] = {}
    try:
        with quiet_warnings():
            warm = {s: workdir / "warmup" / path.name for s, path in roots.items()}
            tiny = generate(3, variant)
            for task in write_tasks(warm, names[:3], tiny, per_dataset).values():
                task()  # imports and JIT out of the timings
            harness.remove_path(workdir / "warmup")

            data = generate(n, variant)
            harness.log(f"[many_small] writing ({write_repeats} interleaved rounds)")
            samples = harness.time_interleaved(
                write_tasks(roots, names, data, per_dataset), repeats=write_repeats,
                warmup=False, before_each=lambda system: _fresh_start(roots[system]),
                progress=progress, self_timed=True,
            )
            phases["write"] = harness.phase_summary(samples)
            sizes = {system: harness.directory_size(root) for system, root in roots.items()}
            phases["size on disk"] = harness.phase_summary({s: [b] for s, b in sizes.items()})
            verify_written(roots, data)
            lance_version = columnar.LanceReader(roots["lance"] / LANCE_DIR).data_storage_version

            for array in ARRAYS:
                harness.log(f"[many_small] read {array} ({repeats} interleaved rounds after a "
                            "warm-up)")
                samples = harness.time_interleaved(
                    read_tasks(roots, data, array, workdir), repeats=repeats, warmup=True,
                    progress=progress, self_timed=True,
                )
                phases[f"read {array}"] = harness.phase_summary(samples)
    finally:
        if args.keep:
            harness.log(f"kept stores under {workdir}")
        else:
            harness.remove_path(workdir)

    notes = ["ratios are peer median / atlas median: < 1 means the peer is faster",
             "atlas (fresh process): import atlas + open + read, timed inside a new process"]
    if not per_dataset:
        notes.append("Atlas.write_array_across_stacked is not in this build: 'atlas' writes "
                     "through the per-dataset API")
    if args.quick:
        notes.append("quick run: small N, not for reporting")
    result = {
        "workload": WORKLOAD,
        "name": args.name or f"{WORKLOAD}_{variant}_n{n}" + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "n": n,
            "variant": variant,
            "arrays": {"temp": f"({DEPTH},) float32, dims depth", "lat": "0-D float64"},
            "atlas_write_method": atlas_adapter.stacked_write_method(),
            "atlas_read": "read_array_across_stacked(array): every dataset, no names given; "
            "handle opened before",
            "atlas_codec": "store default",
            "zarr": f"one group, temp ({n}, {DEPTH}) chunks ({ROWS_PER_CHUNK}, {DEPTH}), lat "
            f"({n},) chunks ({ROWS_PER_CHUNK},), zstd level {zarr_stacked.ZSTD_LEVEL}",
            "zarrs": f"zarr.config codec_pipeline.path = {zarr_stacked.ZARRS_PIPELINE} (strict)",
            "tensorstore": "driver zarr3 on the zarr-python arrays, default context",
            "parquet": f"temp fixed_size_list<float32>[{DEPTH}], lat float64, "
            f"{columnar.PARQUET_OPTIONS}",
            "lance": f"pylance defaults, data storage version {lance_version}",
            "store_bytes": sizes,
            "repeats": repeats,
            "write_repeats": write_repeats,
            "quick": bool(args.quick),
            "verified": "every read and every written store against the generator",
        },
        "versions": {**harness.library_versions(VERSIONED), "atlas": atlas_adapter.version()},
        "units": {"size on disk": "bytes"},
        "phases": phases,
        "notes": notes,
    }
    harness.finish_result(result)
    result["metrics"] = _metrics(result, n)
    result["targets"] = _targets(result, n, variant, per_dataset, args.quick)
    return result


def _metrics(result: dict, n: int) -> dict:
    phases = result["phases"]
    metrics: dict = {}
    for phase in ("read temp", "read lat"):
        metrics[f"{phase}: us per dataset"] = {
            system: round(s["median_s"] / n * 1e6, 3) for system, s in phases[phase].items()
        }
    metrics["write: datasets/s"] = {
        system: round(n / s["median_s"]) for system, s in phases["write"].items()
    }
    metrics["size on disk: bytes per dataset"] = {
        system: round(s["median_s"] / n, 1) for system, s in phases["size on disk"].items()
    }
    return metrics


def _targets(result: dict, n: int, variant: str, stacked: bool, quick: bool) -> list[dict]:
    """Issue 13's targets, stated at N >= 10^5 (a quick run computes them at its N)."""
    if n < TARGET_MIN_N and not quick:
        return []
    ratios = result["ratios"]
    temp, lat = ratios.get("read temp", {}), ratios.get("read lat", {})
    size = ratios.get("size on disk", {}).get("zarr")
    # against the faster of zarr's two writers of the same array (zarrs, multi-threaded)
    write = ratios.get("write", {}).get("zarr+zarrs")
    command = f"python -m benchmarks.many_small --sizes {n} --variants {variant}"
    t = harness.target
    where = f"N={n} {variant}"
    return [
        t(13, f"{where}: stacked temp, zarr+zarrs / atlas", temp.get("zarr+zarrs"), 1.0, True,
          command=command),
        t(13, f"{where}: stacked temp, parquet / atlas", temp.get("parquet"), 1.5, True,
          command=command),
        t(13, f"{where}: stacked temp, lance / atlas", temp.get("lance"), 1.5, True,
          command=command),
        t(13, f"{where}: stacked lat, zarr+zarrs / atlas", lat.get("zarr+zarrs"), 0.33, True,
          command=command),
        t(13, f"{where}: size on disk, atlas / zarr", 1.0 / size if size else None, 1.15, False,
          command=command),
        t(13, f"{where}: stacked write, atlas / zarr+zarrs",
          1.0 / write if write and stacked else None, 2.0, False, command=command),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.many_small", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default=None,
                        help="comma-separated N (default 10000,100000,1000000; quick 2500)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of random,smooth")
    parser.add_argument("--write-repeats", type=int, default=None,
                        help=f"timed write rounds (default: --repeats, at least "
                        f"{QUICK_WRITE_ROUNDS} for N <= {QUICK_WRITE_N}; quick 1)")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    """Every (N, variant) in turn; one result (JSON + chart) each."""
    args = build_parser().parse_args(argv)
    harness.check_repeats(args)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = list(QUICK_SIZES if args.quick else SIZES)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if args.name and len(sizes) * len(variants) > 1:
        raise SystemExit("--name needs a single --sizes and --variants")
    results = []
    for n in sizes:
        for variant in variants:
            result = run_one(args, n, variant)
            harness.emit(result, args)
            results.append(result)
    return results


if __name__ == "__main__":
    main()
