"""Workload 1: the upstream ATLAS benchmark cases (sensors, profile, gridded).

Writes N datasets of a case into every system, then times reading the first 25% of every dimension
of every variable across all datasets. Write times leave out data generation; every timing is a
median of interleaved repeats, warm cache. Usage::

    python -m benchmarks.upstream --case profile --n 1000
    python -m benchmarks.upstream --case all --quick
"""

from __future__ import annotations

import argparse
import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import (
    UPSTREAM_CASES,
    CaseSpec,
    case_layout,
    dataset_names,
    get_case,
    iter_upstream,
    quarter_window,
    window_slices,
)
from benchmarks.peers import floor, netcdf, tensorstore_zarr, zarr_idiomatic, zarr_stacked

WORKLOAD = "upstream"
SUBJECT = "atlas"
ATLAS_OUT = "atlas-out"  # gridded: atlas reading into buffers kept between reads (out=)
QUICK_N = 20
WARMUP_N = 2

Reader = Callable[[Path, list[str], dict, dict], dict]


@dataclass
class System:
    """A storage system: how to write a case into a directory and the ways to read it back."""

    name: str
    write: Callable  # (samples, root, n_datasets) -> None
    readers: dict[str, Reader]
    needs_xarray: bool


def build_systems(args: argparse.Namespace) -> dict[str, System]:
    """Every system this workload compares, keyed by name. In the gridded case TensorStore
    also reads zarr-stacked's arrays, and atlas its own store a second way, both into buffers
    reused from one read to the next."""
    stacked_readers: dict[str, Reader] = {"zarr-stacked": zarr_stacked.read_window}
    atlas_readers: dict[str, Reader] = {SUBJECT: atlas_adapter.read_window}
    if args.case == "gridded":
        stacked_readers["tensorstore-out"] = tensorstore_zarr.window_reader()
        # atlas the same way (out=): the like-for-like row for the comparison with TensorStore
        atlas_readers[ATLAS_OUT] = atlas_adapter.window_reader_into()
    return {
        SUBJECT: System(
            SUBJECT,
            functools.partial(atlas_adapter.write, codec=args.atlas_codec),
            atlas_readers,
            needs_xarray=False,
        ),
        "zarr-idiomatic": System(
            "zarr-idiomatic",
            zarr_idiomatic.write,
            {"zarr-idiomatic": zarr_idiomatic.read_window},
            needs_xarray=True,
        ),
        "zarr-stacked": System(
            "zarr-stacked",
            zarr_stacked.write,
            stacked_readers,
            needs_xarray=False,
        ),
        "netcdf": System(
            "netcdf",
            functools.partial(netcdf.write, codec=args.netcdf_codec),
            {
                "netcdf-mfdataset": functools.partial(
                    netcdf.read_window_mfdataset, parallel=args.netcdf_parallel
                ),
                "netcdf-loop": netcdf.read_window_loop,
            },
            needs_xarray=True,
        ),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.upstream", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--case", choices=[*UPSTREAM_CASES, "all"], default="profile")
    parser.add_argument("--n", type=int, default=None, help="datasets (default: per case)")
    parser.add_argument("--n-vars", type=int, default=4, choices=(2, 4), help="profile variables")
    parser.add_argument(
        "--write-repeats", type=int, default=None, help="timed write rounds (default: --repeats)"
    )
    parser.add_argument(
        "--systems",
        default="atlas,zarr-idiomatic,zarr-stacked,netcdf",
        help="comma-separated subset of atlas, zarr-idiomatic, zarr-stacked, netcdf",
    )
    parser.add_argument("--netcdf-codec", choices=("zlib", "zstd"), default="zlib")
    parser.add_argument(
        "--netcdf-parallel",
        action="store_true",
        help="open_mfdataset(parallel=True) for netCDF (crashes with netCDF4 >= 1.6.1)",
    )
    parser.add_argument("--atlas-codec", choices=("zstd", "lz4", "none"), default="zstd")
    parser.add_argument("--no-floor", action="store_true", help="skip the decode floor")
    parser.add_argument("--no-verify", action="store_true", help="skip checking read results")
    harness.add_common_arguments(parser)
    return parser


def _resolve_n(args: argparse.Namespace, case: CaseSpec) -> int:
    if args.n is not None:
        return args.n
    return QUICK_N if args.quick else case.default_n


def _write_task(system: System, case: CaseSpec, n: int, root: Path) -> Callable[[], float]:
    """A task writing the case into ``root``; returns its write time without data generation."""

    def task() -> float:
        samples = harness.TimedIterator(iter_upstream(case, n, with_xarray=system.needs_xarray))
        begin = time.perf_counter()
        system.write(samples, root, n)
        elapsed = time.perf_counter() - begin
        if samples.count != n:
            raise RuntimeError(f"{system.name} consumed {samples.count} of {n} datasets")
        return elapsed - samples.seconds

    return task


def _warm_up_writers(systems: list[System], case: CaseSpec, workdir: Path) -> None:
    """Write a couple of datasets per system, untimed, so imports and JIT stay out of timings."""
    for system in systems:
        root = workdir / f"warmup-{system.name}"
        system.write(iter_upstream(case, WARMUP_N, with_xarray=system.needs_xarray), root, WARMUP_N)
        harness.remove_path(root)


def reference_window(
    case: CaseSpec, n: int, layout: dict, window: dict[str, slice]
) -> dict[str, np.ndarray]:
    """The expected result of the window read, straight from the generator."""
    out = {}
    for name, spec in layout.items():
        shape = tuple(s.stop - s.start for s in window_slices(spec, window))
        out[name] = np.empty((n, *shape), dtype=spec.dtype)
    for sample in iter_upstream(case, n, with_xarray=False):
        for name, spec in layout.items():
            out[name][sample.index] = sample.raw.data_vars[name].data[window_slices(spec, window)]
    return out


def _checker(reference: dict[str, np.ndarray]) -> Callable[[str, object], None]:
    def check(reader: str, result: object) -> None:
        if reader == harness.FLOOR:
            return
        for name, expected in reference.items():
            got = np.asarray(result[name])
            if got.shape != expected.shape or got.dtype != expected.dtype:
                raise AssertionError(
                    f"{reader} read {name!r} as {got.dtype}{got.shape}, "
                    f"expected {expected.dtype}{expected.shape}"
                )
            if not np.array_equal(got, expected, equal_nan=True):
                raise AssertionError(f"{reader} read wrong values for {name!r}")

    return check


def _floor_input(
    case: CaseSpec,
    n: int,
    layout: dict,
    window: dict[str, slice],
    atlas_root: Path | None,
    codec: str,
) -> tuple[floor.FloorInput, str]:
    """The chunks the window read decodes: the bytes atlas stored, or (when atlas is not part
    of the run) the same chunks compressed by the harness with atlas's codec and level."""
    names = dataset_names(n)
    if atlas_root is not None:
        chunks, sizes, stored_codecs = atlas_adapter.stored_window_chunks(
            atlas_root, layout, names, window
        )
        return floor.FloorInput.from_chunks(chunks, sizes, stored_codecs), "atlas stored bytes"
    level = atlas_adapter.codec_level(codec)
    floor_input = floor.compress_window_chunks(
        iter_upstream(case, n, with_xarray=False), layout, window, codec=codec, level=level
    )
    source = f"compressed by the harness ({codec} level {level}, same chunk grid): atlas not run"
    return floor_input, source


def run(args: argparse.Namespace) -> dict:
    """Run one upstream case and return its result dict (see ``_harness`` for the schema)."""
    case = get_case(args.case, args.n_vars)
    n = _resolve_n(args, case)
    repeats = args.repeats
    write_repeats = args.write_repeats or (1 if args.quick else repeats)
    progress = harness.progress_printer(args.verbose)
    notes: list[str] = []

    all_systems = build_systems(args)
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(all_systems))
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {sorted(all_systems)}")
    if SUBJECT in wanted and (reason := atlas_adapter.unavailable_reason()):
        wanted.remove(SUBJECT)
        notes.append(f"atlas skipped: {reason}")
        harness.log(f"atlas skipped: {reason}")
    systems = [all_systems[name] for name in wanted]

    layout = case_layout(case)
    window = quarter_window(case.dims)
    names = dataset_names(n)
    workdir = harness.make_workdir(args.workdir, f"atlas_bench_{case.name}")
    roots = {system.name: workdir / system.name for system in systems}
    harness.log(f"[{case.name}] n={n} workdir={workdir}")

    try:
        _warm_up_writers(systems, case, workdir)
        harness.log(f"[{case.name}] writing ({write_repeats} interleaved rounds)")
        write_samples = harness.time_interleaved(
            {s.name: _write_task(s, case, n, roots[s.name]) for s in systems},
            repeats=write_repeats,
            warmup=False,
            before_each=lambda name: harness.remove_path(roots[name]),
            progress=progress,
            self_timed=True,
        )
        sizes = {name: harness.directory_size(root) for name, root in roots.items()}

        read_tasks: dict[str, Callable[[], object]] = {}
        for system in systems:
            for reader_name, reader in system.readers.items():
                read_tasks[reader_name] = functools.partial(
                    reader, roots[system.name], names, layout, window
                )
        floor_params: dict = {}
        if not args.no_floor:
            atlas_root = roots.get(SUBJECT)
            floor_input, floor_source = _floor_input(
                case, n, layout, window, atlas_root, args.atlas_codec
            )
            buffer = floor_input.new_buffer()
            read_tasks[harness.FLOOR] = functools.partial(floor.decode, floor_input, buffer)
            floor_params = {
                "floor_source": floor_source,
                "floor_blocks": len(floor_input.chunks),
                "floor_compressed_bytes": floor_input.compressed_bytes,
                "floor_decoded_bytes": floor_input.decoded_bytes,
                "floor_threads": floor.DEFAULT_THREADS,
            }
        check = None if args.no_verify else _checker(reference_window(case, n, layout, window))
        harness.log(f"[{case.name}] reading ({repeats} interleaved rounds after a warm-up)")
        read_samples = harness.time_interleaved(
            read_tasks, repeats=repeats, warmup=True, check=check, progress=progress
        )
    finally:
        if args.keep:
            harness.log(f"kept stores under {workdir}")
        else:
            harness.remove_path(workdir)

    if "netcdf" in wanted and not args.netcdf_parallel:
        notes.append(
            "netcdf-mfdataset uses parallel=False: parallel=True crashes on the threaded "
            "scheduler with this netCDF4 (pydata/xarray#7079, #11088)"
        )
    if args.quick:
        notes.append("quick run: small N and few write rounds; not for reporting")
    params = {
        "case": case.name,
        "n": n,
        "variables": list(case.variable_names),
        "dims": dict(case.dims),
        "chunk_shape": list(case.chunks),
        "window": {dim: [s.start, s.stop] for dim, s in window.items()},
        "repeats": repeats,
        "write_repeats": write_repeats,
        "quick": bool(args.quick),
        "atlas_codec": args.atlas_codec,
        "netcdf_codec": args.netcdf_codec,
        "netcdf_mfdataset_parallel": bool(args.netcdf_parallel),
        "zarr_codec": f"zstd level {zarr_stacked.ZSTD_LEVEL}",
        **({"tensorstore": "tensorstore-out: driver zarr3 on zarr-stacked's arrays, default "
            "context, read into buffers reused across reads (store opened in the timed call)"}
           if "zarr-stacked" in wanted and case.name == "gridded" else {}),
        **({ATLAS_OUT: "atlas's read_array_across_stacked(..., out=buffer), into buffers "
            "reused across reads like tensorstore-out's (store opened in the timed call)"}
           if SUBJECT in wanted and case.name == "gridded" else {}),
        "verified": not args.no_verify,
        "store_bytes": sizes,
        **floor_params,
    }
    if SUBJECT in roots:
        params["atlas_read_method"] = atlas_adapter.read_method()
    versions = harness.library_versions(["tensorstore"] if case.name == "gridded" else [])
    versions["atlas"] = atlas_adapter.version()
    name = args.name or f"{WORKLOAD}_{case.name}_n{n}" + ("_quick" if args.quick else "")
    result = {
        "workload": WORKLOAD,
        "name": name,
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": params,
        "versions": versions,
        "phases": {
            "write": harness.phase_summary(write_samples),
            "read": harness.phase_summary(read_samples),
        },
        "notes": notes,
    }
    harness.finish_result(result)
    result["targets"] = _targets(case.name, n, result["ratios"])
    return result


def _over(a: float | None, b: float | None) -> float | None:
    """a / b of two ratios to atlas (so: one peer's time over another's), None when either is
    missing."""
    return a / b if a is not None and b else None


def _targets(case: str, n: int, ratios: dict) -> list[dict]:
    """The issues' targets this case measures (ratios of peer median to atlas median)."""
    write, read = ratios.get("write", {}), ratios.get("read", {})
    command = f"python -m benchmarks.upstream --case {case} --n {n}"
    t = harness.target
    if case == "profile":
        return [
            t(2, f"profile N={n} write vs zarr idiomatic", write.get("zarr-idiomatic"), 10, True,
              command=command),
            t(5, f"profile N={n} write vs zarr idiomatic", write.get("zarr-idiomatic"), 15, True,
              command=command),
            t(4, f"profile N={n} read vs zarr idiomatic", read.get("zarr-idiomatic"), 60, True,
              command=command),
            t(4, f"profile N={n} read vs zarr stacked", read.get("zarr-stacked"), 3, True,
              command=command),
        ]
    if case == "gridded":
        return [
            t(4, f"gridded N={n} read vs zarr idiomatic", read.get("zarr-idiomatic"), 4, True,
              command=command),
            t(5, f"gridded N={n} write vs zarr idiomatic", write.get("zarr-idiomatic"), 1, True,
              command=command),
            t(5, f"gridded N={n} write vs zarr stacked", write.get("zarr-stacked"), 1, True,
              command=command),
            t(13, f"gridded N={n} read into reused buffers: TensorStore / atlas (tied: "
              ">= 0.95)", _over(read.get("tensorstore-out"), read.get(ATLAS_OUT)), 0.95, True,
              command=command),
        ]
    return []


def main(argv: list[str] | None = None) -> list[dict]:
    """Command line entry: one case, or every case in turn with ``--case all``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    harness.check_repeats(args)
    cases = list(UPSTREAM_CASES) if args.case == "all" else [args.case]
    results = []
    for case_name in cases:
        case_args = copy.copy(args)
        case_args.case = case_name
        if args.name and len(cases) > 1:
            case_args.name = f"{args.name}_{case_name}"
        result = run(case_args)
        harness.emit(result, case_args)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
