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

import fcntl
import os
import struct
import weakref
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
    """Appends chunk records to a local file, then writes the index and trailer.

    Writes go to explicit offsets, so a write that fails part-way (a full disk) leaves nothing
    that counts: the next append, or a retried :meth:`finish`, writes over it. Until
    :meth:`release` (after the commit that references the file) or :meth:`abandon`, the writer
    holds a shared ``flock`` on the file: orphan removal skips files it cannot lock exclusively,
    so a live writer's unreferenced segment is never taken for a crashed writer's leftover.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd = _create_locked(path)
        self._closer = weakref.finalize(self, os.close, self._fd)
        self.size = 0
        self._rows: list[tuple[int, ...]] = []
        self._index: SegmentIndex | None = None
        self._write(HEADER)

    def _write(self, data) -> None:
        """Write ``data`` at ``self.size`` (whole, or raise) and advance past it."""
        view = memoryview(data).cast("B")
        offset, done = self.size, 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)
        self.size = offset + len(view)

    def append(self, slot: int, chunk: int, stored: bytes, decoded_length: int, mask: bytes,
               codec_id: int, partial: tuple[int, int, int, int]) -> tuple[int, ...]:
        """Write one record; returns its index row."""
        if self._index is not None:
            raise ValueError(f"{self.path}: segment is finished; nothing can be appended")
        offset = self.size
        record = stored if not mask else bytes(stored) + mask
        self._write(record)
        row = (slot, chunk, offset, len(stored), decoded_length, len(mask), codec_id,
               checksum(record), *partial)
        self._rows.append(row)
        return row

    def read_record(self, offset: int, length: int) -> bytes:
        """Read back bytes already appended (for reads that see pending writes)."""
        if self._closer.alive:
            return os.pread(self._fd, length, offset)
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), length, offset)

    def finish(self) -> SegmentIndex:
        """Write index and trailer; returns the index of the rows written. Calling it again
        after success returns the same index; after a failure it writes them again."""
        if self._index is not None:
            return self._index
        table = np.array(self._rows, dtype=np.int64).reshape(-1, len(COLUMNS))
        columns = {name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(COLUMNS)}
        index_bytes = b"".join(columns[name].astype("<i8").tobytes() for name in COLUMNS)
        index_offset = self.size
        try:
            self._write(index_bytes + TRAILER.pack(
                TRAILER_MAGIC, VERSION, len(COLUMNS), len(self._rows), index_offset,
                len(index_bytes), checksum(index_bytes), 0))
            os.ftruncate(self._fd, self.size)  # drop what a failed, longer attempt left behind
        except BaseException:
            self.size = index_offset
            raise
        self._index = SegmentIndex(columns)
        return self._index

    def release(self) -> None:
        """The file is committed (or given up): drop the lock and the descriptor."""
        self._closer()

    def abandon(self) -> None:
        self._closer()


def _create_locked(path: str) -> int:
    """Create ``path`` and hold a shared lock on it, making sure the locked file is still the
    one at ``path`` (an orphan sweep may remove it between the create and the lock)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def parse_index(trailer: bytes, read, where: str) -> SegmentIndex:
    """Decode a segment's index given its trailer and ``read(offset, length) -> bytes``."""
    if len(trailer) != TRAILER.size:
        raise CorruptionError(f"{where}: segment too short for its trailer")
    magic, version, n_columns, n_rows, offset, length, crc, pad = TRAILER.unpack(trailer)
    if magic != TRAILER_MAGIC or pad != 0:
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
