"""The atlas demo (``make demo``): a year of daily netCDF files into one store, read back fast.

1. writes a sample collection: one netCDF file per day, ``sst(time=1, lat=180, lon=360)``
   float32 on a 1-degree grid, NaN over land, CF attributes;
2. ``atlas ingest`` the folder into a store, then ``atlas info``;
3. reads ``sst`` of every day as one ``(days, 1, 180, 360)`` array with
   ``Atlas.read_array_across_stacked`` and times it against reading the same files with
   ``xr.open_mfdataset``, a plain ``xr.open_dataset`` loop and a netCDF4 loop;
4. writes quicklook PNGs (``atlas plot`` of one day, and the annual mean and daily global mean
   computed from the stacked read).

Run ``python examples/demo.py --help`` for the options (``--days`` for a shorter run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _sample  # the sibling module, found through the path set above


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def best_of(repeats: int, fn):
    """(best seconds, last result) over ``repeats`` runs: the warm-cache time of ``fn``."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def read_atlas(store, names):
    return store.read_array_across_stacked("sst", names)


def read_mfdataset(files):
    import xarray as xr

    with xr.open_mfdataset(files, combine="nested", concat_dim="time", engine="netcdf4",
                           data_vars="minimal", coords="minimal", compat="override",
                           parallel=False) as ds:
        return ds["sst"].values


def read_xarray_loop(files):
    import xarray as xr

    out = None
    for i, path in enumerate(files):
        with xr.open_dataset(path, engine="netcdf4") as ds:
            values = ds["sst"].values
        if out is None:
            out = np.empty((len(files), *values.shape), values.dtype)
        out[i] = values
    return out


def read_netcdf4_loop(files):
    import netCDF4

    out = None
    for i, path in enumerate(files):
        with netCDF4.Dataset(path) as nc:
            var = nc["sst"]
            var.set_auto_mask(False)
            if out is None:
                out = np.empty((len(files), *var.shape), var.dtype)
            out[i] = var[:]
    return out


def quicklook(stack: np.ndarray, lat, lon, dates, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = stack[:, 0]  # (days, lat, lon)
    ocean = np.isfinite(fields)
    count = ocean.sum(axis=0)
    mean = np.where(count > 0, np.where(ocean, fields, 0).sum(axis=0) / np.maximum(count, 1),
                    np.nan)
    weights = np.cos(np.deg2rad(lat))[:, None] * ocean[0]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 8), layout="constrained",
                                   height_ratios=[3, 2])
    mesh = ax1.pcolormesh(lon, lat, mean, shading="auto", cmap="RdYlBu_r")
    fig.colorbar(mesh, ax=ax1, label="sea surface temperature [K]")
    ax1.set_title(f"mean SST over {len(dates)} days (one stacked atlas read)")
    ax1.set_xlabel("longitude")
    ax1.set_ylabel("latitude")
    for label, rows in (("northern hemisphere", lat > 0), ("southern hemisphere", lat < 0)):
        w = weights[rows]
        daily = np.nansum(fields[:, rows] * w, axis=(1, 2)) / w.sum()
        ax2.plot(dates, daily, label=label)
    ax2.set_title("area-weighted mean SST per day")
    ax2.set_ylabel("K")
    ax2.legend()
    ax2.tick_params(axis="x", labelrotation=30)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365, help="number of daily files (365)")
    parser.add_argument("--resolution", type=float, default=1.0, help="grid spacing in degrees")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="ingest reader processes")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "build" / "demo",
                        help="folder for the PNGs (default: build/demo)")
    parser.add_argument("--workdir", type=Path,
                        help="where to write the files and the store (default: a temporary "
                             "folder, removed at the end)")
    args = parser.parse_args(argv)

    from atlas import Atlas
    from atlas.cli import main as atlas_cli

    start = time.perf_counter()
    tmp = None if args.workdir else tempfile.mkdtemp(prefix="atlas-demo-")
    work = args.workdir or Path(tmp)
    src, store_path = work / "netcdf", work / "store.atlas"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        step(f"1. sample collection: {args.days} daily netCDF files in {src}")
        t = time.perf_counter()
        files = _sample.write_collection(src, days=args.days, resolution=args.resolution)
        size = sum(f.stat().st_size for f in files)
        print(f"wrote {len(files)} files, {size / 1e6:.1f} MB, in {time.perf_counter() - t:.1f} s")

        step(f"2. atlas ingest {src} {store_path} -j {args.jobs}")
        if store_path.exists():
            shutil.rmtree(store_path)
        if atlas_cli(["ingest", str(src), str(store_path), "-j", str(args.jobs)]) != 0:
            return 1
        step(f"   atlas info {store_path}")
        if atlas_cli(["info", str(store_path)]) != 0:
            return 1

        step("3. read sst of every day as one array")
        store = Atlas.open(store_path, read_only=True)
        names = store.list_datasets()
        file_list = [str(f) for f in files]
        cold, _ = best_of(1, lambda: read_atlas(store, names))
        timings = [("atlas read_array_across_stacked", *best_of(args.repeats,
                                                                lambda: read_atlas(store, names)))]
        stack = timings[0][2]
        print(f"atlas: {stack.shape} {stack.dtype} in {timings[0][1]:.3f} s "
              f"(first read, with compiling: {cold:.3f} s)")
        peers = [("xarray open_mfdataset", read_mfdataset),
                 ("xarray open_dataset loop", read_xarray_loop),
                 ("netCDF4 loop", read_netcdf4_loop)]
        for label, fn in peers:
            seconds, values = best_of(args.repeats, lambda fn=fn: fn(file_list))
            values = values.reshape(stack.shape)
            if not np.array_equal(values, stack, equal_nan=True):
                print(f"MISMATCH: {label} read different values than atlas", file=sys.stderr)
                return 1
            timings.append((label, seconds, None))
            print(f"{label}: {seconds:.3f} s (same values as atlas)", flush=True)

        base = timings[0][1]
        mb = stack.nbytes / 1e6
        print(f"\nreading sst of {len(names)} days ({mb:.0f} MB), best of {args.repeats}, "
              "warm cache:\n")
        print(f"  {'method':<34}{'seconds':>9}{'MB/s':>9}{'vs atlas':>10}")
        for label, seconds, _ in timings:
            print(f"  {label:<34}{seconds:>9.3f}{mb / seconds:>9.0f}{seconds / base:>9.1f}x")

        step(f"4. quicklooks in {args.out}")
        atlas_cli(["plot", str(store_path), names[0], "sst", "-o",
                   str(args.out / "first_day_sst.png")])
        lat = store.open_dataset(names[0]).read_array("lat")
        lon = store.open_dataset(names[0]).read_array("lon")
        dates = store.read_array_across_stacked("time", names)[:, 0]
        quicklook(stack, lat, lon, dates, args.out / "annual_mean_sst.png")
        print(f"wrote {args.out / 'annual_mean_sst.png'}")
        print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
