"""Workload 4: cold start, a fresh process doing ``import atlas`` + open + first read.

A store of the upstream ``profile`` case (N = 100, 4 variables) is written once. Then each run
starts a new Python process that times, from its first line: the import, opening the store and
the first read, which is one dataset's ``temperature`` (the first 25% of each dimension) or, in the
"stacked first" variants, the same window across all N datasets. The parent also times the whole
process (interpreter start and exit included). Systems, interleaved, at least 5 runs each, medians:

- ``atlas``: Numba cache warm (``NUMBA_CACHE_DIR`` is a directory a first untimed run filled);
- ``atlas (stacked first)``: the first read is the stacked read;
- ``atlas (cold cache)``: the one-dataset first read with a new empty ``NUMBA_CACHE_DIR`` each
  run, so every kernel the read needs is compiled (a read of one box, as this one is, needs
  none since 2026-12-04: numpy copies a single box; the stacked first read loads them);
- ``zarr``: ``import zarr``, the stacked zarr store of the same data (and ``zarr (stacked
  first)``: its first read is the stacked read);
- ``xarray+zarr``: ``import xarray``, ``xr.open_zarr`` of one dataset's store;
- ``netcdf``: ``import netCDF4``, one dataset's file (no stacked read);
- ``python``: an empty script (interpreter start-up, for reference; process wall only).

    python -m benchmarks.cold_start
    python -m benchmarks.cold_start --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import (
    case_layout,
    dataset_names,
    get_case,
    iter_upstream,
    quarter_window,
    window_start_shape,
)
from benchmarks.peers import netcdf, zarr_idiomatic, zarr_stacked

WORKLOAD = "cold_start"
SUBJECT = "atlas"
STACKED = "atlas (stacked first)"
COLD = "atlas (cold cache)"
ZARR_STACKED = "zarr (stacked first)"
ARRAY = "temperature"

# Each child script prints one JSON line: seconds since its first line at each step.
_PRELUDE = "import time, json, sys\n_t0 = time.perf_counter()\n_marks = {}\n" \
    "def mark(step):\n    _marks[step] = time.perf_counter() - _t0\n"
_EPILOGUE = "print(json.dumps(_marks))\n"

CHILD = {
    SUBJECT: """
import atlas
mark("import")
store = atlas.Atlas.open(P["store"], read_only=True)
mark("open")
store.open_dataset(P["names"][0]).read_array(P["array"], P["start"], P["shape"])
mark("first read")
""",
    STACKED: """
import atlas
mark("import")
store = atlas.Atlas.open(P["store"], read_only=True)
mark("open")
store.read_array_across_stacked(P["array"], P["names"], P["start"], P["shape"])
mark("first stacked read")
""",
    "zarr": """
import numpy as np
import zarr
mark("import")
array = zarr.open_group(P["zarr"], mode="r")[P["array"]]
mark("open")
sel = tuple(slice(b, b + n) for b, n in zip(P["start"], P["shape"]))
array[(0, *sel)]
mark("first read")
""",
    ZARR_STACKED: """
import numpy as np
import zarr
mark("import")
array = zarr.open_group(P["zarr"], mode="r")[P["array"]]
mark("open")
sel = tuple(slice(b, b + n) for b, n in zip(P["start"], P["shape"]))
array[(slice(None), *sel)]
mark("first stacked read")
""",
    "xarray+zarr": """
import xarray as xr
mark("import")
ds = xr.open_zarr(P["zarr_one"])
mark("open")
sel = {d: slice(b, b + n) for d, b, n in zip(P["dims"], P["start"], P["shape"])}
ds[P["array"]].isel(sel).values
mark("first read")
""",
    "netcdf": """
import netCDF4
mark("import")
nc = netCDF4.Dataset(P["netcdf_one"], "r")
mark("open")
sel = tuple(slice(b, b + n) for b, n in zip(P["start"], P["shape"]))
nc.variables[P["array"]][sel]
mark("first read")
""",
    "python": "",
}
STEPS = ("import", "open", "first read", "first stacked read")


def child_script(system: str, params: dict) -> str:
    body = CHILD[system]
    return _PRELUDE + f"P = json.loads({json.dumps(json.dumps(params))})\n" + body + _EPILOGUE


def run_child(system: str, params: dict, env: dict) -> dict:
    """Run one fresh process; return its step marks plus the parent's view of its wall time."""
    code = child_script(SUBJECT if system == COLD else system, params)
    begin = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    wall = time.perf_counter() - begin
    if done.returncode != 0:
        raise RuntimeError(f"{system} child failed:\n{done.stderr[-2000:]}")
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    marks["process wall"] = wall
    return marks


def _prepare(workdir: Path, n: int) -> dict:
    """Write the stores every system opens; return the child parameters."""
    case = get_case("profile", 4)
    layout = case_layout(case)
    window = quarter_window(case.dims)
    start, shape = window_start_shape(layout[ARRAY], window)
    atlas_adapter.write(iter_upstream(case, n, with_xarray=False), workdir / "atlas-store", n)
    zarr_stacked.write(iter_upstream(case, n, with_xarray=False), workdir / "zarr-stacked", n)
    zarr_idiomatic.write(iter_upstream(case, 1, with_xarray=True), workdir / "zarr-one", 1)
    netcdf.write(iter_upstream(case, 1, with_xarray=True), workdir / "netcdf-one", 1)
    names = dataset_names(n)
    return {
        "store": str(atlas_adapter.store_path(workdir / "atlas-store")),
        "zarr": str(zarr_stacked.store_path(workdir / "zarr-stacked")),
        "zarr_one": str(zarr_idiomatic.store_path(workdir / "zarr-one", names[0])),
        "netcdf_one": str(netcdf.file_path(workdir / "netcdf-one", names[0])),
        "names": names,
        "array": ARRAY,
        "dims": list(case.dim_names),
        "start": start,
        "shape": shape,
    }


def run(args: argparse.Namespace) -> dict:
    n = args.n or (20 if args.quick else 100)
    repeats = args.runs or (2 if args.quick else 7)
    progress = harness.progress_printer(args.verbose)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_cold")
    systems = [SUBJECT, STACKED, COLD, "zarr", ZARR_STACKED, "xarray+zarr", "netcdf",
               "python"]
    if args.systems:
        wanted = [w.strip() for w in args.systems.split(",")]
        unknown = sorted(set(wanted) - set(systems))
        if unknown or SUBJECT not in wanted:
            raise SystemExit(f"--systems must include {SUBJECT!r} and name only {systems}")
        systems = [s for s in systems if s in wanted]
    samples: dict[str, dict[str, list[float]]] = {}
    harness.log(f"[cold_start] n={n} runs={repeats} workdir={workdir}")
    try:
        params = _prepare(workdir, n)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
        warm_cache = workdir / "numba-cache-warm"
        warm_env = {**base_env, "NUMBA_CACHE_DIR": str(warm_cache)}
        run_child(STACKED, params, warm_env)  # fills the warm cache (every read kernel)
        run_child(SUBJECT, params, warm_env)
        for system in systems:  # one untimed run each: the OS file cache is warm for all
            if system not in (SUBJECT, STACKED, COLD):
                run_child(system, params, base_env)
        for round_index in range(repeats):
            for system in harness.rotated(systems, round_index):
                if system == COLD:
                    cold_dir = tempfile.mkdtemp(prefix="numba-cold-", dir=workdir)
                    env = {**base_env, "NUMBA_CACHE_DIR": cold_dir}
                elif system in (SUBJECT, STACKED):
                    env = warm_env
                else:
                    env = base_env
                marks = run_child(system, params, env)
                steps = [s for s in STEPS if s in marks]
                if steps:
                    upto = "first read" if "first read" in marks else steps[-1]
                    marks["import+open+first read"] = marks[upto]
                    previous = 0.0
                    for step in steps:  # marks are cumulative; phases show each step alone
                        marks[step], previous = marks[step] - previous, marks[step]
                for phase, seconds in marks.items():
                    samples.setdefault(phase, {}).setdefault(system, []).append(seconds)
                if progress:
                    progress(f"  {system:<20s} round {round_index + 1}: {marks}")
    finally:
        if args.keep:
            harness.log(f"kept stores under {workdir}")
        else:
            harness.remove_path(workdir)

    order = ["import+open+first read", "process wall", *STEPS]
    phases = {p: harness.phase_summary(samples[p]) for p in order if p in samples}
    result = {
        "workload": WORKLOAD,
        "name": args.name or WORKLOAD + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "n": n,
            "case": "profile, 4 variables",
            "first read": f"{ARRAY}, first 25% of each dimension, of one dataset",
            "first stacked read": f"the same window of {ARRAY} across all {n} datasets",
            "runs": repeats,
            "warm cache": "NUMBA_CACHE_DIR filled by one untimed run",
            "cold cache": "NUMBA_CACHE_DIR a new empty directory per run",
            "python": sys.executable,
            "quick": bool(args.quick),
        },
        "versions": {**harness.library_versions(), "atlas": atlas_adapter.version()},
        "phases": phases,
        "notes": [
            "steps are times within the child from its first line; 'process wall' is the "
            "parent's time for the whole child process, interpreter start and exit included"
        ] + (["quick run, not for reporting"] if args.quick else []),
    }
    harness.finish_result(result)
    main_phase = phases["import+open+first read"]
    wall = phases["process wall"]
    result["metrics"] = {
        f"{system} {what} (s)": phase[system]["median_s"]
        for what, phase in (("import+open+first read", main_phase), ("process wall", wall))
        for system in (SUBJECT, STACKED, COLD)
        if system in phase
    }
    command = "python -m benchmarks.cold_start" + (" --quick" if args.quick else "")
    result["targets"] = [
        harness.target(5, "cold start, warm Numba cache: import+open+first read",
                       main_phase[SUBJECT]["median_s"], 1.0, False, " s", command),
        harness.target(5, "cold start, warm Numba cache: whole process",
                       wall[SUBJECT]["median_s"], 1.0, False, " s", command),
    ]
    if "xarray+zarr" in main_phase:  # issue 13: no slower than xarray + zarr doing the same
        result["targets"].append(harness.target(
            13, "cold start: xarray+zarr time / atlas time (import+open+first read)",
            main_phase["xarray+zarr"]["median_s"] / main_phase[SUBJECT]["median_s"], 1.0, True,
            "x", command))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=None, help="datasets (default 100, quick 20)")
    parser.add_argument("--runs", type=int, default=None, help="runs per system (7, quick 2)")
    parser.add_argument("--systems", default=None, help="comma-separated subset (with atlas)")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
