"""Wide files: one observation file of 400 variables, most of them 0-D (issue 9).

ARM, radiosonde and glider files hold hundreds of scalar variables, each with a few attributes,
next to a handful of profiles; per-variable overhead, not bytes, decides how fast they go in and
out. The file is written with netCDF4 and opened with ``xr.open_dataset(...).load()`` (so the
variables carry the encodings real files give them). Phases, interleaved, medians:

- ``ingest``: atlas ``Atlas.create`` + ``add_xr_dataset`` + ``flush`` of a new store;
  netcdf ``Dataset.to_netcdf`` (netCDF4 engine) of the same Dataset;
- ``read``: atlas ``Atlas.open`` + ``to_xarray`` + ``.load()``; netcdf ``xr.open_dataset``
  + ``.load()``.

The target is ingest + read back well under a second.

    python -m benchmarks.wide_files
    python -m benchmarks.wide_files --quick
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness

WORKLOAD = "wide_files"
SUBJECT = "atlas"
PEER = "netcdf"
TARGET_S = 1.0  # "ingests and reads back in well under a second"


def write_wide_file(path: Path, n_vars: int, n_profiles: int, n_time: int) -> None:
    """``n_vars`` variables: ``n_profiles`` (time,) profiles, a time coordinate, a station-name
    char array, a packed scalar and 0-D scalars of mixed types for the rest."""
    import netCDF4

    dtypes = ("f4", "f8", "i4", "i2", "i1")
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", n_time)
        nc.createDimension("strlen", 8)
        nc.site_id = "sgp"
        nc.facility_id = "C1"
        nc.history = "created by benchmarks/wide_files.py"
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "seconds since 2024-06-01 00:00:00"
        t[:] = np.arange(n_time, dtype="f8")
        site = nc.createVariable("site", "S1", ("strlen",))
        site[:] = np.array([b"SGP C1"], dtype="S8").view("S1")
        packed = nc.createVariable("packed_scalar", "i2", (), fill_value=np.int16(-9999))
        packed.set_auto_maskandscale(False)
        packed.scale_factor = np.float32(0.1)
        packed.add_offset = np.float32(10.0)
        packed.assignValue(np.int16(1234))
        for i in range(n_profiles):
            v = nc.createVariable(f"profile_{i}", "f4", ("time",), fill_value=np.float32(-9999))
            v.units = "K"
            v[:] = np.linspace(0, i, n_time, dtype="f4")
        for i in range(n_vars - n_profiles - 3):
            t = dtypes[i % len(dtypes)]
            fill = np.array(-1, dtype=t) if i % 7 == 0 else None
            v = nc.createVariable(f"param_{i:03d}", t, (), fill_value=fill)
            v.long_name = f"parameter {i}"
            v.units = "1"
            v.valid_min = np.array(0, dtype=t)
            v.assignValue(np.array(i % 100, dtype=t))


def run(args: argparse.Namespace) -> dict:
    import xarray as xr

    import atlas

    repeats = args.repeats if not args.quick else max(1, min(args.repeats, 2))
    progress = harness.progress_printer(args.verbose)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_wide")
    source = workdir / "wide.nc"
    write_wide_file(source, args.n_vars, args.n_profiles, args.n_time)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(source) as opened:
            ds = opened.load()
    assert len(ds.variables) == args.n_vars
    store_path = workdir / "store"
    copy_path = workdir / "copy.nc"
    atlas.Atlas.create(store_path).close()  # so that the read tasks find a store

    def atlas_ingest():
        harness.remove_path(store_path)
        begin = time.perf_counter()
        with atlas.Atlas.create(store_path) as store:
            store.add_xr_dataset(ds, "wide")
        return time.perf_counter() - begin

    def netcdf_ingest():
        harness.remove_path(copy_path)
        begin = time.perf_counter()
        ds.to_netcdf(copy_path, engine="netcdf4")
        return time.perf_counter() - begin

    def atlas_read():
        return atlas.Atlas.open(store_path, read_only=True).to_xarray("wide").load()

    def netcdf_read():
        with xr.open_dataset(copy_path) as opened:
            return opened.load()

    def check(name: str, result) -> None:
        if name in (SUBJECT, PEER) and isinstance(result, xr.Dataset):
            xr.testing.assert_identical(result, ds)

    harness.log(f"ingest: {args.n_vars} variables, {repeats} rounds")
    ingest = harness.time_interleaved({SUBJECT: atlas_ingest, PEER: netcdf_ingest}, repeats,
                                      progress=progress, self_timed=True)
    harness.log("read back")
    read = harness.time_interleaved({SUBJECT: atlas_read, PEER: netcdf_read}, repeats,
                                    check=check, progress=progress)
    phases = {"ingest": harness.phase_summary(ingest), "read": harness.phase_summary(read)}
    batch = _batch_ingest(ds, workdir / "batch", args.batch) if args.batch > 1 else None
    both = phases["ingest"][SUBJECT]["median_s"] + phases["read"][SUBJECT]["median_s"]
    stored = harness.directory_size(store_path)
    result = {
        "workload": WORKLOAD,
        "name": args.name or f"{WORKLOAD}_{args.n_vars}" + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "variables": args.n_vars,
            "profiles": f"{args.n_profiles} float32 (time={args.n_time},)",
            "scalars": f"{args.n_vars - args.n_profiles - 3} 0-D (f4/f8/i4/i2/i1, 3 attributes, "
                       "every 7th with a _FillValue), a packed int16 scalar, a char array",
            "repeats": repeats,
            "quick": bool(args.quick),
        },
        "versions": {**harness.library_versions(["cftime"]), "atlas": atlas_adapter.version()},
        "phases": phases,
        "metrics": {"atlas ingest + read (s)": both, "store bytes": stored,
                    "netCDF bytes": source.stat().st_size,
                    **({f"atlas ingest per file, {args.batch} files one flush (s)": batch}
                       if batch is not None else {})},
        "notes": ["netcdf: to_netcdf of the same Dataset and xr.open_dataset(...).load()"]
        + (["quick run, not for reporting"] if args.quick else []),
    }
    harness.finish_result(result)
    command = "python -m benchmarks.wide_files" + (" --quick" if args.quick else "")
    result["targets"] = [harness.target(9, f"wide file ({args.n_vars} variables) ingest + read",
                                        both, TARGET_S, False, " s", command)]
    print(f"atlas ingest + read back of {args.n_vars} variables: {both:.3f} s "
          f"(ingest {phases['ingest'][SUBJECT]['median_s']:.3f} s, "
          f"read {phases['read'][SUBJECT]['median_s']:.3f} s)", flush=True)
    if not args.keep:
        harness.remove_path(workdir)
    return result


def _batch_ingest(ds, path: Path, n: int) -> float:
    """Seconds per file when ``n`` copies go into one store with one flush (one segment per
    variable name for the whole batch, as a collection ingest does); one round, not a claim."""
    import atlas

    begin = time.perf_counter()
    with atlas.Atlas.create(path) as store:
        for i in range(n):
            store.add_xr_dataset(ds, f"wide_{i}")
    seconds = (time.perf_counter() - begin) / n
    harness.remove_path(path)
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.wide_files", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n-vars", type=int, default=400, help="variables in the file (400)")
    parser.add_argument("--n-profiles", type=int, default=9, help="1-D variables among them")
    parser.add_argument("--n-time", type=int, default=100, help="length of the profiles")
    parser.add_argument("--batch", type=int, default=10,
                        help="also time N files ingested with one flush (per file; 0: skip)")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
