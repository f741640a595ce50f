"""Stream a dask-chunked Dataset into a store one chunk at a time, then read it back lazily.

The variable below is 32 MiB but only one 2 MiB chunk per variable is in memory while it is
written; the dask chunk shape becomes the on-disk chunk shape, and reading back gives one dask
task per on-disk chunk.

Run: python examples/03_dask_streaming.py
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

import atlas


def hourly_field(block_info=None) -> np.ndarray:
    """One dask block: a smooth field whose values depend on the block's position."""
    info = block_info[None]
    (t0, _), (y0, _), (x0, _) = info["array-location"]
    nt, ny, nx = info["chunk-shape"]
    t = np.arange(t0, t0 + nt)[:, None, None]
    y = np.arange(y0, y0 + ny)[None, :, None]
    x = np.arange(x0, x0 + nx)[None, None, :]
    return (15 + 5 * np.sin(t / 24 * 2 * np.pi) + 0.01 * y - 0.02 * x).astype(np.float32)


def main() -> None:
    shape, chunks = (64, 360, 360), (4, 360, 360)  # 32 MiB, 16 chunks of 2 MiB
    temperature = da.map_blocks(hourly_field, chunks=da.core.normalize_chunks(chunks, shape),
                                dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    ds = xr.Dataset(
        {"temperature": (("time", "lat", "lon"), temperature, {"units": "degC"})},
        coords={"time": np.arange(shape[0]) * np.timedelta64(1, "h")
                + np.datetime64("2024-01-01", "ns"),
                "lat": np.linspace(-90, 90, shape[1]), "lon": np.linspace(-180, 180, shape[2])},
    )
    with tempfile.TemporaryDirectory(prefix="atlas-example-") as root:
        path = Path(root) / "store"
        with atlas.Atlas.create(path) as store:
            store.add_xr_dataset(ds, "big")  # one dask block computed and written at a time
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"wrote {temperature.nbytes / 2**20:.0f} MiB; peak RSS of this process "
              f"{peak_mib:.0f} MiB")

        store = atlas.Atlas.open(path)
        meta = store.open_dataset("big").array_meta("temperature")
        print("on-disk chunk shape:", meta["chunk_shape"])
        back = store.to_xarray("big")
        lazy = back["temperature"].data
        print("dask-backed:", type(lazy).__name__, "chunks per axis:",
              [len(c) for c in lazy.chunks])
        first_chunk = back["temperature"][0:4].compute()  # reads exactly one on-disk chunk
        np.testing.assert_array_equal(first_chunk.values, temperature[0:4].compute())
        daily_mean = back["temperature"].resample(time="1D").mean().compute()
        print("daily mean of day 1 at the first cell:", float(daily_mean[0, 0, 0]))
        # a different on-disk chunking than dask's
        with atlas.Atlas.open(path) as store:
            store.add_xr_dataset(ds.isel(time=slice(0, 16)), "rechunked",
                                 chunks={"temperature": [16, 90, 90]})
        view = atlas.Atlas.open(path).open_dataset("rechunked")
        print("override chunk shape:", view.array_meta("temperature")["chunk_shape"])


if __name__ == "__main__":
    main()
