"""Workload 5: peak memory of a dask-backed ingest of variables 10x larger than one chunk.

Each run is a fresh process (peak RSS: ``VmHWM`` of ``/proc/self/status``, else
``resource.getrusage(RUSAGE_SELF).ru_maxrss``; see ``peak()`` in the child for why) that
builds an ``xarray.Dataset`` of V float32 variables, each a dask array of K chunks (default V = 3,
K = 10, 32 MiB chunks: ~1 GiB in all, random values, so nothing compresses away), and ingests it:

- ``atlas``: ``store.add_xr_dataset(ds, name)`` + ``flush()`` (one dask block computed and written
  at a time, atlas chunk = dask chunk);
- ``zarr``: ``ds.to_zarr(path)`` (zarr v3, zstd 3, zarr chunk = dask chunk, dask's threaded
  scheduler), the idiomatic peer;
- ``atlas (eager)``: the same dataset ``.load()``-ed into memory first, then ingested (what the
  budget would be without streaming);
- ``atlas (fixed)`` / ``zarr (fixed)``: the same process ingesting a tiny dataset of the same
  variables: imports, store creation and code paths, no data. This is the fixed overhead.

The claim checked: peak(atlas) - peak(atlas fixed) <= V chunks ("one chunk per variable").

    python -m benchmarks.ingest_memory
    python -m benchmarks.ingest_memory --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness

WORKLOAD = "ingest_memory"
SUBJECT = "atlas"
SYSTEMS = ("atlas", "atlas (fixed)", "zarr", "zarr (fixed)", "atlas (eager)")

CHILD = r"""
import json, resource, sys, time
P = json.loads(sys.argv[1])
import numpy as np
import dask
import dask.array as da
import xarray as xr
import atlas
import zarr
from zarr.codecs import ZstdCodec

def peak():
    # VmHWM: the high-water RSS of this process's own address space. ru_maxrss is not usable
    # alone: Linux carries the parent's high-water mark across fork + exec into the child.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux

def dataset(rows, row_chunk):
    data_vars = {}
    for v in range(P["n_vars"]):
        rng = da.random.default_rng(v)
        data = rng.random((rows, P["cols"]), chunks=(row_chunk, P["cols"]), dtype=np.float32)
        data_vars[f"var{v}"] = (("y", "x"), data)
    return xr.Dataset(data_vars)

mode = P["mode"]
fixed = mode.endswith("(fixed)")
if fixed:
    rows, row_chunk = 2, 1
else:
    rows, row_chunk = P["row_chunk"] * P["n_chunks"], P["row_chunk"]
ds = dataset(rows, row_chunk)
setup = peak()
begin = time.perf_counter()
if mode.startswith("atlas"):
    store = atlas.Atlas.create(P["path"])
    if mode == "atlas (eager)":
        ds = ds.load()
    store.add_xr_dataset(ds, "big")
    store.flush()
else:
    encoding = {name: {"compressors": [ZstdCodec(level=3)]} for name in ds.data_vars}
    ds.to_zarr(P["path"], mode="w", zarr_format=3, encoding=encoding, consolidated=False)
seconds = time.perf_counter() - begin
print(json.dumps({"setup": setup, "peak": peak(), "seconds": seconds}))
"""


def run_child(params: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{params['mode']} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    chunk_mib = args.chunk_mib or (4 if args.quick else 32)
    n_chunks = args.chunks
    n_vars = args.vars or (2 if args.quick else 3)
    cols = 1024
    row_chunk = chunk_mib * 2**20 // (4 * cols)
    chunk_bytes = row_chunk * cols * 4
    repeats = 1 if args.quick else args.repeats
    systems = list(SYSTEMS)
    if args.systems:
        systems = [s for s in SYSTEMS if s in {w.strip() for w in args.systems.split(",")}]
        if SUBJECT not in systems:
            raise SystemExit(f"--systems must include {SUBJECT!r}; choose from {SYSTEMS}")
    progress = harness.progress_printer(args.verbose)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_ingest")
    harness.log(f"[ingest_memory] {n_vars} vars x {n_chunks} chunks of {chunk_mib} MiB, "
                f"workdir={workdir}")
    peaks: dict[str, list[float]] = {s: [] for s in systems}
    seconds: dict[str, list[float]] = {s: [] for s in systems}
    try:
        for round_index in range(repeats):
            for system in harness.rotated(systems, round_index):
                path = workdir / f"{round_index}-{system.replace(' ', '_')}"
                params = {
                    "mode": system,
                    "path": str(path),
                    "n_vars": n_vars,
                    "n_chunks": n_chunks,
                    "row_chunk": row_chunk,
                    "cols": cols,
                }
                got = run_child(params)
                harness.remove_path(path)
                peaks[system].append(got["peak"])
                seconds[system].append(got["seconds"])
                if progress:
                    progress(f"  {system:<14s} round {round_index + 1}: "
                             f"peak {got['peak'] / 2**20:.0f} MiB in {got['seconds']:.2f} s")
    finally:
        if args.keep:
            harness.log(f"kept stores under {workdir}")
        else:
            harness.remove_path(workdir)

    phases = {
        "peak RSS": harness.phase_summary(peaks),
        "ingest time": harness.phase_summary(
            {s: v for s, v in seconds.items() if "(fixed)" not in s}
        ),
    }

    def above_fixed(system: str) -> float:
        fixed = phases["peak RSS"][f"{system.split(' ')[0]} (fixed)"]["median_s"]
        return phases["peak RSS"][system]["median_s"] - fixed

    budget = n_vars * chunk_bytes
    growth = {
        s: above_fixed(s)
        for s in ("atlas", "zarr", "atlas (eager)")
        if s in peaks and f"{s.split(' ')[0]} (fixed)" in peaks
    }
    result = {
        "workload": WORKLOAD,
        "name": args.name or WORKLOAD + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "variables": n_vars,
            "chunks_per_variable": n_chunks,
            "chunk": f"({row_chunk}, {cols}) float32 = {chunk_bytes / 2**20:.0f} MiB",
            "variable_bytes": n_chunks * chunk_bytes,
            "dataset_bytes": n_vars * n_chunks * chunk_bytes,
            "budget (one chunk per variable)": budget,
            "repeats": repeats,
            "quick": bool(args.quick),
        },
        "versions": {**harness.library_versions(), "atlas": atlas_adapter.version()},
        "units": {"peak RSS": "bytes"},
        "phases": phases,
        "notes": ["peak RSS (VmHWM) of a fresh process per run; '(fixed)' runs ingest "
                  "a tiny dataset of the same variables: the fixed overhead"]
        + (["quick run, not for reporting"] if args.quick else []),
    }
    harness.finish_result(result)
    result["metrics"] = {
        "peak above fixed overhead (MiB)": {k: round(v / 2**20, 1) for k, v in growth.items()},
        "peak above fixed overhead (chunks)": {
            k: round(v / chunk_bytes, 2) for k, v in growth.items()
        },
        "dataset (MiB)": round(n_vars * n_chunks * chunk_bytes / 2**20, 1),
    }
    command = "python -m benchmarks.ingest_memory" + (" --quick" if args.quick else "")
    result["targets"] = [
        harness.target(5, "ingest: (peak - fixed overhead) / (one chunk per variable)",
                       growth["atlas"] / budget if "atlas" in growth else None, 1.0, False,
                       "x", command),
    ]
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chunk-mib", type=int, default=None, help="chunk MiB (32, quick 4)")
    parser.add_argument("--chunks", type=int, default=10, help="chunks per variable (10)")
    parser.add_argument("--vars", type=int, default=None, help="variables (3, quick 2)")
    parser.add_argument("--systems", default=None, help=f"comma-separated subset of {SYSTEMS}")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
