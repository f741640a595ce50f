"""Peer: TensorStore on the stacked zarr v3 arrays that zarr-python wrote.

TensorStore (``driver: zarr3`` on a ``file`` kvstore, default context: no chunk cache, data copy
and file I/O concurrency sized to the machine) opens the very arrays of ``zarr_stacked`` and
``many_small``; what it adds is its own C++ read path. Reads go either into a new array
(``TensorStore.read()``) or into a buffer the caller keeps between reads: ``ts.array(buf,
copy=False, write=True)`` wraps the buffer, and ``.write(source)`` copies the source view into
it (TensorStore aligns the source window to the buffer's zero origin).

:func:`write_array` creates a stacked array with the same chunking and codecs as zarr-python's
(``bytes`` little endian + ``zstd``) for the write comparison of ``many_small``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.cases import ArrayLayout, window_slices


def open_array(path: Path):
    """A read-only TensorStore of the zarr v3 array at ``path`` (its ``zarr.json`` directory)."""
    import tensorstore as ts

    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    return ts.open(spec, read=True).result()


def buffer_target(buffer: np.ndarray):
    """A TensorStore view of ``buffer`` (no copy) that reads can be written into."""
    import tensorstore as ts

    return ts.array(buffer, copy=False, write=True)


def read_into(source, target) -> None:
    """Copy the TensorStore view ``source`` into ``target`` (from :func:`buffer_target`)."""
    target.write(source).result()


def write_array(path: Path, data: np.ndarray, chunks: tuple[int, ...], zstd_level: int,
                fill_value: float = float("nan"), dims: tuple[str, ...] | None = None) -> None:
    """Create the zarr v3 array at ``path`` and write ``data`` (one call)."""
    import tensorstore as ts

    metadata = {
        "shape": list(data.shape),
        "data_type": np.dtype(data.dtype).name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": _fill_json(fill_value),
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "zstd", "configuration": {"level": zstd_level, "checksum": False}},
        ],
    }
    if dims is not None:
        metadata["dimension_names"] = list(dims)
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)},
            "metadata": metadata}
    store = ts.open(spec, create=True, delete_existing=True).result()
    store.write(data).result()


def _fill_json(value: float) -> float | str:
    if isinstance(value, float) and np.isnan(value):
        return "NaN"
    return value


def window_reader() -> Callable[[Path, list[str], dict[str, ArrayLayout], dict], dict]:
    """An ``upstream`` reader over ``zarr_stacked``'s store: open each variable's array and read
    the window across ``names`` into a buffer kept from one call to the next."""
    from benchmarks.peers import zarr_stacked

    buffers: dict[tuple, np.ndarray] = {}

    def read_window(root: Path, names: list[str], layout: dict[str, ArrayLayout],
                    window: dict) -> dict[str, np.ndarray]:
        group = zarr_stacked.store_path(root)
        stored = json.loads((group / "zarr.json").read_text())["attributes"]["dataset_names"]
        if list(names) == stored:
            rows = slice(None)
        else:
            row_of = {name: i for i, name in enumerate(stored)}
            rows = np.array([row_of[name] for name in names], dtype=np.intp)
        out = {}
        for name, spec in layout.items():
            selection = window_slices(spec, window)
            shape = (len(names), *(s.stop - s.start for s in selection))
            key = (name, shape, spec.dtype.str)
            if key not in buffers:
                buffers[key] = np.empty(shape, spec.dtype)
            array = open_array(group / name)
            source = array[(rows, *selection)] if isinstance(rows, slice) else array.oindex[
                (rows, *selection)]
            read_into(source, buffer_target(buffers[key]))
            out[name] = buffers[key]
        return out

    return read_window
