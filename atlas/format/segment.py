"""Segment files: immutable chunk records followed by a columnar chunk index.

Layout (all integers little-endian)::

    b"ATLSEG01"                          8-byte header
    record 0, record 1, ...              chunk bytes (+ written-mask bytes), back to back
    index: N_COLUMNS int64 columns of n_rows values each, in COLUMNS order
    trailer (48 bytes): b"ATLSIDX1", u32 version, u32 n_columns, u64 n_rows,
                        u64 index_offset, u64 index_length, u32 crc32c(index), u32 0

``docs/format.md`` is the full specification.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from atlas.codecs import checksum
from atlas.errors import CorruptionError

HEADER = b"ATLSEG01"
TRAILER_MAGIC = b"ATLSIDX1"
TRAILER = struct.Struct("<8sIIQQQII")
VERSION = 1

# slot: which (dataset, array) incarnation; chunk: linear id in that array's chunk grid;
# offset/stored/decoded/mask lengths in bytes; nulls/valid/min/max: the chunk's stats partial
# (min/max hold the value's bits: int64, uint64 or float64 reinterpreted as int64).
COLUMNS = (
    "slot", "chunk", "offset", "stored_length", "decoded_length", "mask_length", "codec",
    "checksum", "nulls", "valid", "min", "max",
)


@dataclass
class SegmentIndex:
    """The chunk index of one segment as columns (each an int64 array of n rows)."""

    columns: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        return len(self.columns["slot"])

    @classmethod
    def empty(cls) -> "SegmentIndex":
        return cls({name: np.zeros(0, np.int64) for name in COLUMNS})


class SegmentWriter:
    """Appends chunk records to a local file, then writes the index and trailer."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "w+b")
        self._file.write(HEADER)
        self.size = len(HEADER)
        self._rows: list[tuple[int, ...]] = []

    def append(self, slot: int, chunk: int, stored: bytes, decoded_length: int, mask: bytes,
               codec_id: int, partial: tuple[int, int, int, int]) -> tuple[int, ...]:
        """Write one record; returns its index row."""
        offset = self.size
        self._file.write(stored)
        if mask:
            self._file.write(mask)
        crc = checksum(stored) if not mask else checksum(bytes(stored) + mask)
        row = (slot, chunk, offset, len(stored), decoded_length, len(mask), codec_id, crc,
               *partial)
        self._rows.append(row)
        self.size += len(stored) + len(mask)
        return row

    def read_record(self, offset: int, length: int) -> bytes:
        """Read back bytes already appended (for reads that see pending writes)."""
        if not self._file.closed:
            self._file.flush()
            return os.pread(self._file.fileno(), length, offset)
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), length, offset)

    def finish(self) -> SegmentIndex:
        """Write index and trailer, flush; returns the index of the rows written."""
        table = np.array(self._rows, dtype=np.int64).reshape(-1, len(COLUMNS))
        columns = {name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(COLUMNS)}
        index_bytes = b"".join(columns[name].astype("<i8").tobytes() for name in COLUMNS)
        index_offset = self.size
        self._file.write(index_bytes)
        self._file.write(TRAILER.pack(TRAILER_MAGIC, VERSION, len(COLUMNS), len(self._rows),
                                      index_offset, len(index_bytes), checksum(index_bytes), 0))
        self._file.flush()
        self._file.close()
        self.size = index_offset + len(index_bytes) + TRAILER.size
        return SegmentIndex(columns)

    def abandon(self) -> None:
        if not self._file.closed:
            self._file.close()


def parse_index(trailer: bytes, read, where: str) -> SegmentIndex:
    """Decode a segment's index given its trailer and ``read(offset, length) -> bytes``."""
    if len(trailer) != TRAILER.size:
        raise CorruptionError(f"{where}: segment too short for its trailer")
    magic, version, n_columns, n_rows, offset, length, crc, _ = TRAILER.unpack(trailer)
    if magic != TRAILER_MAGIC:
        raise CorruptionError(f"{where}: not an atlas segment (bad trailer magic)")
    if version != VERSION or n_columns != len(COLUMNS):
        raise CorruptionError(f"{where}: segment version {version} / {n_columns} columns "
                              f"not understood (expected {VERSION} / {len(COLUMNS)})")
    if length != n_rows * 8 * n_columns:
        raise CorruptionError(f"{where}: index length {length} does not match {n_rows} rows")
    data = bytes(read(offset, length))
    if len(data) != length or checksum(data) != crc:
        raise CorruptionError(f"{where}: segment index fails its checksum")
    flat = np.frombuffer(data, dtype="<i8").astype(np.int64, copy=False)
    columns = {name: flat[i * n_rows : (i + 1) * n_rows] for i, name in enumerate(COLUMNS)}
    return SegmentIndex(columns)
