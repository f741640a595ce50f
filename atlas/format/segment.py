"""Segment files (format version 2): compressed blocks of chunks, then their index.

A segment holds chunks of one array name. Small chunks of many datasets are packed, in the
order they were written, into shared **blocks** of about the store's block size once decoded;
a chunk of at least a sixteenth of that gets a block of its own. Each block is one compressed frame with one
crc32c. The file is an ``atlas.format.container`` (magic ``ATLSEG02``) whose payload is the
blocks and whose sections are:

    ["blocks"]     offset (i8d), stored (i8), decoded (i8), codec (u1), crc (u4)
    ["chunks"]     slot (i8d), chunk (i8d), block (i8d), offset (i8d), length (i8d), mask (i8)
    ["partials"]   row (i8d), nulls (i8), valid (i8), min (f8), max (f8)

``chunks`` row i says that chunk ``chunk`` of the array incarnation ``slot`` lies in block
``block`` at ``offset`` of its decoded bytes: ``length`` bytes of values followed by ``mask``
bytes of written mask. ``partials`` holds the statistics partial of the chunks (by row) of
arrays with more than one chunk; an array of one chunk keeps its statistics in the catalog.
``docs/format.md`` is the full specification.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

from atlas.codecs import checksum
from atlas.errors import CorruptionError
from atlas.format.columns import declared_kind
from atlas.format.container import ContainerWriter, Footer, LockedFile, read_section

MAGIC = b"ATLSEG02"
BLOCK_COLUMNS = (("offset", "i8d"), ("stored", "i8"), ("decoded", "i8"), ("codec", "u1"),
                 ("crc", "u4"))
CHUNK_COLUMNS = (("slot", "i8d"), ("chunk", "i8d"), ("block", "i8d"), ("offset", "i8d"),
                 ("length", "i8d"), ("mask", "i8"))
PARTIAL_COLUMNS = (("row", "i8d"), ("nulls", "i8"), ("valid", "i8"), ("min", "f8"),
                   ("max", "f8"))
MAX_DECODED_BLOCK = 1 << 40  # a block claiming more is corrupt (no chunk is that big)
# A chunk of at least 1/OWN_BLOCK_SHARE of the block size gets a block of its own: reading one
# chunk never decodes more than that many times its size, and packing saves nothing that big.
OWN_BLOCK_SHARE = 16


def own_block(size: int, block_size: int) -> bool:
    """Whether a chunk of ``size`` bytes is written as a block of its own."""
    return size * OWN_BLOCK_SHARE >= block_size


def _empty(columns) -> dict[str, np.ndarray]:
    return {name: np.zeros(0, np.int64) for name, _kind in columns}


@dataclass
class SegmentIndex:
    """The index of one segment as int64 columns."""

    blocks: dict[str, np.ndarray]
    chunks: dict[str, np.ndarray]
    partials: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        return len(self.chunks["slot"])

    @property
    def n_blocks(self) -> int:
        return len(self.blocks["offset"])

    @classmethod
    def empty(cls) -> "SegmentIndex":
        return cls(_empty(BLOCK_COLUMNS), _empty(CHUNK_COLUMNS), _empty(PARTIAL_COLUMNS))


class _Columns:
    """int64 columns appended to one row at a time (or many), as compact ``array('q')``s."""

    def __init__(self, columns):
        self.names = [name for name, _kind in columns]
        self.data = {name: array("q") for name in self.names}

    def append(self, *values) -> None:
        for name, value in zip(self.names, values):
            self.data[name].append(value)

    def extend(self, **columns) -> None:
        for name in self.names:
            self.data[name].frombytes(np.ascontiguousarray(columns[name], np.int64).tobytes())

    def __len__(self) -> int:
        return len(self.data[self.names[0]])

    def numpy(self) -> dict[str, np.ndarray]:
        return {name: np.frombuffer(col, np.int64).copy() if len(col) else np.zeros(0, np.int64)
                for name, col in self.data.items()}

    def truncate(self, rows: int) -> None:
        for col in self.data.values():
            del col[rows:]


class SegmentWriter(LockedFile):
    """Appends blocks to a segment file, then writes the index sections, footer and trailer.

    Until :meth:`release` (after the commit that references it) the file stays locked (see
    :class:`LockedFile`); a retried :meth:`finish` after a failure writes the index again.
    """

    def __init__(self, path: str):
        super().__init__(path)
        self.blocks = _Columns(BLOCK_COLUMNS)
        self.chunks = _Columns(CHUNK_COLUMNS)
        self.partials = _Columns(PARTIAL_COLUMNS)
        self._index: SegmentIndex | None = None
        self.write(MAGIC)

    def write_block(self, stored, decoded_length: int, codec_id: int) -> int:
        """Append one compressed block; returns its number in this segment."""
        if self._index is not None:
            raise ValueError(f"{self.path}: segment is finished; nothing can be appended")
        offset = self.write(stored)
        self.blocks.append(offset, len(stored), decoded_length, codec_id, checksum(stored))
        return len(self.blocks) - 1

    def read_block(self, number: int) -> bytes:
        """The stored bytes of a block already written (reads that see pending writes)."""
        return self.pread(self.blocks.data["offset"][number], self.blocks.data["stored"][number])

    def finish(self, chunks: dict | None = None, partials: dict | None = None) -> SegmentIndex:
        """Write index, footer and trailer; returns the index. ``chunks``/``partials``: the
        columns to write instead of those appended one by one (a pending segment keeps its own).
        Calling it again after success returns the same index; after a failure it writes them
        again."""
        if self._index is not None:
            return self._index
        index = SegmentIndex(self.blocks.numpy(),
                             self.chunks.numpy() if chunks is None else chunks,
                             self.partials.numpy() if partials is None else partials)
        end = self.size
        try:
            writer = ContainerWriter(self.write)
            for name, table, columns in (("blocks", index.blocks, BLOCK_COLUMNS),
                                         ("chunks", index.chunks, CHUNK_COLUMNS),
                                         ("partials", index.partials, PARTIAL_COLUMNS)):
                rows = len(next(iter(table.values())))
                writer.add((name,), [(n, k, table[n]) for n, k in columns], rows)
            writer.finish(kind="segment")
            self.truncate()
        except BaseException:
            self.size = end
            raise
        self._index = index
        return index


def parse_index(footer: Footer, read, where: str) -> SegmentIndex:
    """The index of a segment from its footer and ``read(offset, length)``, checked so that
    no row can point outside the file or outside its block."""
    tables = {}
    for name, columns in (("blocks", BLOCK_COLUMNS), ("chunks", CHUNK_COLUMNS),
                          ("partials", PARTIAL_COLUMNS)):
        ref = footer.sections.get((name,))
        if ref is None:
            raise CorruptionError(f"{where}: segment index has no {name} section")
        if [[c[0], declared_kind(c[1])] for c in ref.spec] != [list(c) for c in columns]:
            raise CorruptionError(f"{where}: segment {name} columns are not the expected ones")
        tables[name] = read_section(ref, read(ref.offset, ref.stored), f"{where} {name}")
    index = SegmentIndex(tables["blocks"], tables["chunks"], tables["partials"])
    problem = index_problem(index, footer.end_of_payload)
    if problem:
        raise CorruptionError(f"{where}: {problem}")
    return index


def index_problem(index: SegmentIndex, end_of_payload: int) -> str | None:
    """What makes an index impossible for a payload ending at ``end_of_payload``, or None."""
    b, c, p = index.blocks, index.chunks, index.partials
    if np.any(b["offset"] < len(MAGIC)) or np.any(b["stored"] < 0) or np.any(
            b["offset"] + b["stored"] > end_of_payload):
        return "a block lies outside the file"
    if np.any(b["decoded"] < 0) or np.any(b["decoded"] > MAX_DECODED_BLOCK):
        return "a block claims an impossible decoded size"
    if np.any((b["codec"] < 0) | (b["codec"] > 2)) or np.any((b["crc"] < 0) | (b["crc"] >= 2**32)):
        return "a block has an unknown codec or checksum"
    blocks = c["block"]
    if np.any(blocks < 0) or np.any(blocks >= len(b["offset"])):
        return "a chunk names a block that does not exist"
    if np.any(c["offset"] < 0) or np.any(c["length"] < 0) or np.any(c["mask"] < 0):
        return "a chunk has a negative offset or length"
    ends = c["offset"] + c["length"] + c["mask"]
    if len(blocks) and np.any(ends > b["decoded"][blocks]):
        return "a chunk lies outside its block"
    # writers end every block with its last chunk: a block claiming more decoded bytes is
    # refused before anything is allocated for it (a decompression bomb)
    furthest = np.zeros(len(b["decoded"]), np.int64)
    np.maximum.at(furthest, blocks, ends)
    if np.any(b["decoded"] > furthest):
        return "a block claims more decoded bytes than its chunks hold"
    if np.any(c["slot"] < 0) or np.any(c["chunk"] < 0):
        return "a chunk has a negative slot or chunk number"
    rows = p["row"]
    if np.any(rows < 0) or np.any(rows >= len(blocks)) or np.any(p["nulls"] < 0) or np.any(
            p["valid"] < 0):
        return "a statistics partial is out of range"
    return None
