"""Peer: netCDF4, one file per dataset.

Write: ``ds.to_netcdf`` per dataset with zlib level 4 (or zstd where the netCDF build has it) and
the case's chunk sizes. Two readers: ``xr.open_mfdataset`` + ``.isel`` + ``.load()``, and a plain
``netCDF4.Dataset`` loop that slices each file into a preallocated array.

``open_mfdataset(parallel=True)`` opens the files on dask's threaded scheduler, and with
netCDF4 >= 1.6.1 (which releases the GIL) that crashes: "NetCDF: Can't open HDF5 attribute" or a
segfault (pydata/xarray#7079, #11088; reproduced here with netCDF4 1.7.5, libnetcdf 4.10.1 and
HDF5 2.2). So the default is ``parallel=False``; HDF5 serialises access behind one lock anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from benchmarks.cases import ArrayLayout, Sample, window_slices
from benchmarks.peers import quiet_warnings

ZLIB_LEVEL = 4
ZSTD_LEVEL = 3


def file_path(root: Path, name: str) -> Path:
    return root / f"{name}.nc"


def has_zstd() -> bool:
    """Whether this netCDF4 build can write zstd-compressed variables."""
    import netCDF4

    return bool(getattr(netCDF4, "__has_zstandard_support__", False))


def _encoding(sample: Sample, codec: str) -> dict:
    if codec == "zlib":
        compression = {"zlib": True, "complevel": ZLIB_LEVEL}
    elif codec == "zstd":
        if not has_zstd():
            raise ValueError("this netCDF4 build has no zstd support; use codec='zlib'")
        compression = {"compression": "zstd", "complevel": ZSTD_LEVEL}
    else:
        raise ValueError(f"netCDF codec must be 'zlib' or 'zstd', got {codec!r}")
    encoding = {}
    for name, array in sample.raw.arrays.items():
        encoding[name] = {**compression, "chunksizes": tuple(array.chunk_shape)}
    return encoding


def write(
    samples: Iterable[Sample], root: Path, n_datasets: int | None = None, codec: str = "zlib"
) -> None:
    """One netCDF4 file per dataset under ``root`` (needs samples generated with xarray)."""
    root.mkdir(parents=True, exist_ok=True)
    encoding = None
    with quiet_warnings():
        for sample in samples:
            if sample.xarray is None:
                raise ValueError("netcdf.write needs samples generated with_xarray=True")
            if encoding is None:
                encoding = _encoding(sample, codec)
            sample.xarray.to_netcdf(
                file_path(root, sample.name), engine="netcdf4", format="NETCDF4", encoding=encoding
            )


def read_window_mfdataset(
    root: Path,
    names: list[str],
    layout: dict[str, ArrayLayout],
    window: dict[str, slice],
    parallel: bool = False,
) -> dict[str, np.ndarray]:
    """``window`` of every variable via ``xr.open_mfdataset`` (see the module note on parallel)."""
    import xarray as xr

    with quiet_warnings():
        paths = [file_path(root, name) for name in names]
        combined = xr.open_mfdataset(
            paths, engine="netcdf4", parallel=parallel, combine="nested", concat_dim="dataset"
        )
        with combined:
            loaded = combined.isel(window).load()
        return {
            name: loaded[name].transpose("dataset", *spec.dims).values
            for name, spec in layout.items()
        }


def read_window_loop(
    root: Path, names: list[str], layout: dict[str, ArrayLayout], window: dict[str, slice]
) -> dict[str, np.ndarray]:
    """``window`` of every variable via a ``netCDF4.Dataset`` loop into preallocated arrays."""
    import netCDF4

    selections = {name: window_slices(spec, window) for name, spec in layout.items()}
    out = {
        name: np.empty(
            (len(names), *(s.stop - s.start for s in selections[name])), dtype=spec.dtype
        )
        for name, spec in layout.items()
    }
    for row, dataset in enumerate(names):
        with netCDF4.Dataset(file_path(root, dataset), "r") as nc:
            nc.set_auto_maskandscale(False)
            for name, selection in selections.items():
                out[name][row] = nc.variables[name][selection]
    return out
