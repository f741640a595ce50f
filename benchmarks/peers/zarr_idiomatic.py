"""Peer: zarr v3 used the idiomatic way, one zarr store per dataset written by xarray.

Write: ``ds.to_zarr`` per dataset (zstd level 3, the case's chunks). Read: one
``xr.open_mfdataset(..., engine="zarr", parallel=True)`` over all stores, ``.isel`` of the window,
``.load()`` - what the original ATLAS benchmark compared against.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from benchmarks.cases import ArrayLayout, Sample
from benchmarks.peers import quiet_warnings

ZSTD_LEVEL = 3


def store_path(root: Path, name: str) -> Path:
    return root / f"{name}.zarr"


def _encoding(sample: Sample) -> dict:
    from zarr.codecs import ZstdCodec

    arrays = sample.raw.arrays
    return {
        name: {"compressors": [ZstdCodec(level=ZSTD_LEVEL)], "chunks": tuple(a.chunk_shape)}
        for name, a in arrays.items()
    }


def write(samples: Iterable[Sample], root: Path, n_datasets: int | None = None) -> None:
    """One zarr v3 store per dataset under ``root`` (needs samples generated with xarray)."""
    root.mkdir(parents=True, exist_ok=True)
    with quiet_warnings():
        encoding = None
        for sample in samples:
            if sample.xarray is None:
                raise ValueError("zarr_idiomatic.write needs samples generated with_xarray=True")
            if encoding is None:  # every dataset of a case shares one layout
                encoding = _encoding(sample)
            sample.xarray.to_zarr(
                store_path(root, sample.name), mode="w", zarr_format=3, encoding=encoding
            )


def read_window(
    root: Path, names: list[str], layout: dict[str, ArrayLayout], window: dict[str, slice]
) -> dict[str, np.ndarray]:
    """``window`` of every variable in ``layout`` across ``names``, stacked on a new first axis."""
    import xarray as xr

    with quiet_warnings():
        paths = [store_path(root, name) for name in names]
        combined = xr.open_mfdataset(
            paths, engine="zarr", parallel=True, combine="nested", concat_dim="dataset"
        )
        with combined:
            loaded = combined.isel(window).load()
        return {
            name: loaded[name].transpose("dataset", *spec.dims).values
            for name, spec in layout.items()
        }
