"""Peer: zarr v3 best case, one stacked ``(N, ...)`` array per variable.

What an expert would build for many same-shaped datasets: one zarr group, one array per variable
with a leading ``dataset`` axis and chunks ``(1, *chunks)``, zstd level 3. Rows are written in
batches (bounded memory) so zarr can encode many chunks per call; reads slice the arrays directly.
Coordinates are stored once; dataset names and ids as group attributes and an ``id`` array.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from benchmarks.cases import ArrayLayout, Sample, window_slices
from benchmarks.peers import quiet_warnings

ZSTD_LEVEL = 3
BATCH_BYTES = 256 * 2**20  # rows buffered before one zarr write call
STORE_NAME = "stacked.zarr"


def store_path(root: Path) -> Path:
    return root / STORE_NAME


def _create_arrays(group, first: Sample, n_datasets: int) -> dict:
    from zarr.codecs import ZstdCodec

    compressors = [ZstdCodec(level=ZSTD_LEVEL)]
    for name, coord in first.raw.coords.items():
        array = group.create_array(
            name,
            shape=coord.data.shape,
            chunks=coord.data.shape,
            dtype=coord.data.dtype,
            compressors=compressors,
            dimension_names=coord.dims,
        )
        array[...] = coord.data
    arrays = {}
    for name, var in first.raw.data_vars.items():
        fill = var.fill_value if var.fill_value is not None else 0
        arrays[name] = group.create_array(
            name,
            shape=(n_datasets, *var.data.shape),
            chunks=(1, *var.chunk_shape),
            dtype=var.data.dtype,
            fill_value=fill,
            compressors=compressors,
            dimension_names=("dataset", *var.dims),
            attributes=dict(var.attrs),
        )
    return arrays


def write(samples: Iterable[Sample], root: Path, n_datasets: int) -> None:
    """Write ``n_datasets`` samples as rows of one stacked array per variable."""
    import zarr

    root.mkdir(parents=True, exist_ok=True)
    with quiet_warnings():
        group = zarr.open_group(store_path(root), mode="w", zarr_format=3)
        arrays: dict = {}
        buffers: dict[str, np.ndarray] = {}
        names: list[str] = []
        ids: list[int] = []
        batch_start = 0
        rows = 0
        for sample in samples:
            if not arrays:
                arrays = _create_arrays(group, sample, n_datasets)
                row_bytes = sum(v.data.nbytes for v in sample.raw.data_vars.values())
                batch_rows = max(1, min(n_datasets, BATCH_BYTES // max(1, row_bytes)))
                buffers = {
                    name: np.empty((batch_rows, *v.data.shape), v.data.dtype)
                    for name, v in sample.raw.data_vars.items()
                }
            for name, var in sample.raw.data_vars.items():
                buffers[name][rows] = var.data
            names.append(sample.name)
            ids.append(int(sample.raw.attrs.get("id", len(ids))))
            rows += 1
            if rows == len(next(iter(buffers.values()))):
                _flush_rows(arrays, buffers, batch_start, rows)
                batch_start += rows
                rows = 0
        if rows:
            _flush_rows(arrays, buffers, batch_start, rows)
        if len(names) != n_datasets:
            raise ValueError(f"expected {n_datasets} samples, got {len(names)}")
        id_array = group.create_array("id", shape=(len(ids),), dtype="int64", chunks=(len(ids),))
        id_array[...] = np.asarray(ids, dtype=np.int64)
        group.attrs["dataset_names"] = names


def _flush_rows(arrays: dict, buffers: dict[str, np.ndarray], start: int, rows: int) -> None:
    for name, array in arrays.items():
        array[start : start + rows] = buffers[name][:rows]


def read_window(
    root: Path, names: list[str], layout: dict[str, ArrayLayout], window: dict[str, slice]
) -> dict[str, np.ndarray]:
    """``window`` of every variable across ``names`` by direct slicing of the stacked arrays."""
    import zarr

    with quiet_warnings():
        group = zarr.open_group(store_path(root), mode="r")
        stored_names = group.attrs["dataset_names"]
        if list(names) == stored_names:
            rows = slice(None)
        else:
            row_of = {name: i for i, name in enumerate(stored_names)}
            rows = np.array([row_of[name] for name in names], dtype=np.intp)
        out = {}
        for name, spec in layout.items():
            array = group[name]
            selection = (rows, *window_slices(spec, window))
            if isinstance(rows, slice):
                out[name] = array[selection]
            else:
                out[name] = array.oindex[selection]
        return out


# --- whole stacked arrays (many_small) ---------------------------------------------------------

ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"


def codec_pipeline_config(pipeline: str) -> dict:
    """zarr config for ``pipeline``: "zarr-python" (zarr's own) or "zarrs" (the Rust pipeline of
    zarrs-python; ``strict`` so that an array it cannot handle fails instead of falling back)."""
    if pipeline == "zarr-python":
        return {}
    if pipeline == "zarrs":
        return {"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.strict": True}
    raise ValueError(f"pipeline must be 'zarr-python' or 'zarrs', got {pipeline!r}")


def write_arrays(path: Path, arrays: dict[str, tuple[np.ndarray, tuple[int, ...], tuple[str, ...]]],
                 pipeline: str = "zarr-python") -> None:
    """A group at ``path`` with one array per item ``name: (data, chunks, dimension names)``,
    zstd level 3, each written whole in one call by ``pipeline``."""
    import zarr
    from zarr.codecs import ZstdCodec

    with quiet_warnings(), zarr.config.set(codec_pipeline_config(pipeline)):
        group = zarr.open_group(path, mode="w", zarr_format=3)
        for name, (data, chunks, dims) in arrays.items():
            array = group.create_array(
                name,
                shape=data.shape,
                chunks=chunks,
                dtype=data.dtype,
                fill_value=float("nan") if data.dtype.kind == "f" else 0,
                compressors=[ZstdCodec(level=ZSTD_LEVEL)],
                dimension_names=dims,
            )
            array[...] = data


def open_arrays(path: Path, names: list[str], pipeline: str = "zarr-python") -> dict:
    """The arrays ``path/<name>`` (members of a group or not), opened for reading through
    ``pipeline`` (zarr binds an array to the codec pipeline configured when it is opened)."""
    import zarr

    with quiet_warnings(), zarr.config.set(codec_pipeline_config(pipeline)):
        return {name: zarr.open_array(path / name, mode="r") for name in names}
