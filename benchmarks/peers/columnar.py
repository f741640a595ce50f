"""Peers: one table with a row per dataset, as Parquet (pyarrow) and as Lance (pylance).

A per-dataset array of shape ``(k,)`` is a ``fixed_size_list<item>[k]`` column, a 0-D array a
plain column; row i is dataset i. Reading a column back gives the stacked ``(N, k)`` or ``(N,)``
numpy array: the list's flat values viewed with that shape (no copy when the column comes back as
one chunk, one concatenation otherwise).

- Parquet: ``pq.write_table`` with zstd (pyarrow's default level) and no dictionary encoding
  (float columns only fall back from it after paying for it), default row groups; read through a
  ``pq.ParquetFile`` kept open (footer parsed once), ``read(columns=[...])``, threads on.
- Lance: ``lance.write_dataset`` with pylance's defaults (its current stable file version; pylance
  14 leaves ``fixed_size_list<float32>`` values uncompressed: ``lance-encoding:compression`` field
  metadata changes nothing there), read through a ``lance.dataset`` kept open,
  ``to_table(columns=[...])``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def arrow_table(arrays: dict[str, np.ndarray]):
    """An Arrow table with a column per item; ``(N, k)`` arrays become fixed-size lists (the
    numpy buffers are wrapped, not copied)."""
    import pyarrow as pa

    columns = {}
    for name, data in arrays.items():
        if data.ndim == 1:
            columns[name] = pa.array(data)
        elif data.ndim == 2:
            values = pa.array(np.ascontiguousarray(data).reshape(-1))
            columns[name] = pa.FixedSizeListArray.from_arrays(values, data.shape[1])
        else:
            raise ValueError(f"{name!r}: only (N,) and (N, k) arrays, got shape {data.shape}")
    return pa.table(columns)


def column_to_numpy(column) -> np.ndarray:
    """A ``ChunkedArray`` of a plain or fixed-size-list column as ``(N,)`` or ``(N, k)``."""
    import pyarrow as pa

    chunks = column.chunks
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        parts = [chunk.flatten().to_numpy() for chunk in chunks]
    else:
        width = None
        parts = [chunk.to_numpy() for chunk in chunks]
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return flat if width is None else flat.reshape(-1, width)


# --- Parquet ------------------------------------------------------------------------------------

PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": False}


def write_parquet(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(arrow_table(arrays), str(path), **PARQUET_OPTIONS)


class ParquetReader:
    """A Parquet file opened once; :meth:`read` gives one column as numpy."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self._file = pq.ParquetFile(str(path))

    def read(self, name: str) -> np.ndarray:
        return column_to_numpy(self._file.read(columns=[name]).column(name))


# --- Lance --------------------------------------------------------------------------------------


def write_lance(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import lance

    lance.write_dataset(arrow_table(arrays), str(path), mode="create")


class LanceReader:
    """A Lance dataset opened once; :meth:`read` gives one column as numpy."""

    def __init__(self, path: Path):
        import lance

        self._dataset = lance.dataset(str(path))

    def read(self, name: str) -> np.ndarray:
        return column_to_numpy(self._dataset.to_table(columns=[name]).column(name))

    @property
    def data_storage_version(self) -> str | None:
        return getattr(self._dataset, "data_storage_version", None)


# --- a catalog table: a row per dataset, queried by column (benchmarks.query) -----------------


def write_parquet_columns(path: Path, columns: dict) -> None:
    """One Parquet file of plain columns (numpy arrays, or Arrow arrays for what numpy cannot
    say, e.g. lists), with :data:`PARQUET_OPTIONS`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: values if isinstance(values, pa.Array) else pa.array(values)
                      for name, values in columns.items()})
    pq.write_table(table, str(path), **PARQUET_OPTIONS)


def list_column(shape: tuple[int, ...], n: int):
    """``n`` rows of the same ``list<int64>`` value ``shape`` (built from offsets: no Python
    list per row)."""
    import pyarrow as pa

    offsets = np.arange(n + 1, dtype=np.int32) * len(shape)
    values = np.tile(np.asarray(shape, dtype=np.int64), n)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int64()))


def read_columns(source, columns: list[str] | None):
    """An Arrow table of ``columns`` (None: all): ``source`` is a path, read with
    ``pq.read_table`` (footer parsed in the call), or a ``pq.ParquetFile`` opened before."""
    import pyarrow.parquet as pq

    if isinstance(source, pq.ParquetFile):
        return source.read(columns=columns)
    return pq.read_table(str(source), columns=columns)


def read_frame(source, columns: list[str] | None, index: str):
    """:func:`read_columns` as a pandas DataFrame indexed by the column ``index``."""
    wanted = None if columns is None else [index, *columns]
    return read_columns(source, wanted).to_pandas().set_index(index)


def select_names(source, columns: list[str], condition, name: str = "name") -> list[str]:
    """The ``name`` of every row where ``condition`` (a ``pyarrow.compute`` expression over
    ``columns``) holds, as a Python list: the columns and the names read, filtered with
    pyarrow.compute (a null never matches)."""
    table = read_columns(source, [name, *columns])
    return table.filter(condition).column(name).to_pylist()
