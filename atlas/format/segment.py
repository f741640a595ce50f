"""Segment files (format version 2): compressed blocks of chunks, then their index.

A segment holds chunks of one array name. Small chunks of many datasets are packed, in the
order they were written, into shared **blocks** of about the store's block size once decoded;
a chunk of at least a sixteenth of that gets a block of its own. Each block is one compressed frame with one
crc32c. The file is an ``atlas.format.container`` (magic ``ATLSEG02``) whose payload is the
blocks and whose sections are:

    ["blocks"]     offset (i8d), stored (i8), decoded (i8), codec (u1), crc (u4)
    ["chunks"]     slot (i8d), chunk (i8d), block (i8d), offset (i8d), length (i8d), mask (i8)
    ["partials"]   row (i8d), nulls (i8), valid (i8), min (f8), max (f8)
    ["linked"]     key (txt), size (i8)            only in a segment that links blocks

``chunks`` row i says that chunk ``chunk`` of the array incarnation ``slot`` lies in block
``block`` at ``offset`` of its decoded bytes: ``length`` bytes of values followed by ``mask``
bytes of written mask. ``partials`` holds the statistics partial of the chunks (by row) of
arrays with more than one chunk; an array of one chunk keeps its statistics in the catalog.

A merge may **link** a block instead of copying it: the block stays in the file that holds it
(an older segment, kept for it), and the merged segment's ``blocks`` row names that file with a
sixth column, ``file`` (0: this file; i: row i - 1 of ``linked``). Earlier versions read the
same bytes, so keeping them costs no disk twice.
``docs/format.md`` is the full specification.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

import numpy as np

from atlas.codecs import BLOCK_CODEC_IDS, CODEC_MASK, block_checksum, with_codec_byte
from atlas.errors import CorruptionError
from atlas.format.columns import declared_kind
from atlas.format.container import FILE_KEY, ContainerWriter, Footer, LockedFile, read_section
from atlas.format.keys import checked

MAGIC = b"ATLSEG02"
BLOCK_COLUMNS = (("offset", "i8d"), ("stored", "i8"), ("decoded", "i8"), ("codec", "u1"),
                 ("crc", "u4"))
CHUNK_COLUMNS = (("slot", "i8d"), ("chunk", "i8d"), ("block", "i8d"), ("offset", "i8d"),
                 ("length", "i8d"), ("mask", "i8"))
LINKED_BLOCK_COLUMNS = (*BLOCK_COLUMNS, ("file", "i8"))
LINKED_COLUMNS = (("key", "txt"), ("size", "i8"))
PARTIAL_COLUMNS = (("row", "i8d"), ("nulls", "i8"), ("valid", "i8"), ("min", "f8"),
                   ("max", "f8"))
# The footer key of a segment whose shuffled blocks' crcs cover their codec byte
# (``codecs.block_checksum``): every segment written since format version 6. Older segments'
# crcs cover the stored bytes only; their index is read as if they covered the codec too.
CODEC_IN_CRC = "codec_in_crc"
MAX_DECODED_BLOCK = 1 << 40  # a block claiming more is corrupt (no chunk is that big)
# A chunk of at least 1/OWN_BLOCK_SHARE of the block size gets a block of its own: reading one
# chunk never decodes more than that many times its size, and packing saves nothing that big.
OWN_BLOCK_SHARE = 16
# A merge links a block (keeps it where it is) only while at least 1/LINKED_LIVE_SHARE of its
# decoded bytes are chunks the merged segment lists: a reader then decodes at most that many
# times what it uses. It also bounds what a linked block may claim to decode to.
LINKED_LIVE_SHARE = 8


def own_block(size: int, block_size: int) -> bool:
    """Whether a chunk of ``size`` bytes is written as a block of its own."""
    return size * OWN_BLOCK_SHARE >= block_size


def _empty(columns) -> dict[str, np.ndarray]:
    return {name: np.zeros(0, np.int64) for name, _kind in columns}


@dataclass
class SegmentIndex:
    """The index of one segment as int64 columns (``blocks["file"]``: 0 for a block of this
    file, i for one in ``linked[i - 1]``, a (key, size) pair)."""

    blocks: dict[str, np.ndarray]
    chunks: dict[str, np.ndarray]
    partials: dict[str, np.ndarray]
    linked: list[tuple[str, int]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.chunks["slot"])

    @property
    def n_blocks(self) -> int:
        return len(self.blocks["offset"])

    @classmethod
    def empty(cls) -> "SegmentIndex":
        return cls(_empty(LINKED_BLOCK_COLUMNS), _empty(CHUNK_COLUMNS), _empty(PARTIAL_COLUMNS))


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

    def __init__(self, path: str, key: str | None = None):
        super().__init__(path)
        self.key = key  # recorded in the footer: a reader refuses the file under another key
        self.blocks = _Columns(LINKED_BLOCK_COLUMNS)
        self.linked: dict[tuple[str, int], int] = {}  # (key, size) -> its file number
        self.chunks = _Columns(CHUNK_COLUMNS)
        self.partials = _Columns(PARTIAL_COLUMNS)
        self._index: SegmentIndex | None = None
        self.write(MAGIC)

    def write_block(self, stored, decoded_length: int, codec_id: int,
                    crc: int | None = None) -> int:
        """Append one compressed block (``crc``: its checksum when already computed, on the
        thread that compressed it); returns its number in this segment."""
        if self._index is not None:
            raise ValueError(f"{self.path}: segment is finished; nothing can be appended")
        offset = self.write(stored)
        self.blocks.append(offset, len(stored), decoded_length, codec_id,
                           block_checksum(codec_id, stored) if crc is None else crc, 0)
        return len(self.blocks) - 1

    def link_block(self, key: str, size: int, offset: int, stored: int, decoded: int,
                   codec_id: int, crc: int) -> int:
        """List a block of the segment ``key`` (of ``size`` bytes) as one of this segment's,
        where it lies; returns its number in this segment."""
        if self._index is not None:
            raise ValueError(f"{self.path}: segment is finished; nothing can be linked")
        file = self.linked.setdefault((key, size), len(self.linked) + 1)
        self.blocks.append(offset, stored, decoded, codec_id, crc, file)
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
                             self.partials.numpy() if partials is None else partials,
                             list(self.linked))
        end = self.size
        try:
            writer = ContainerWriter(self.write)
            # a segment that links nothing keeps the five block columns (every reader's form)
            sections = [("blocks", index.blocks,
                         LINKED_BLOCK_COLUMNS if self.linked else BLOCK_COLUMNS),
                        ("chunks", index.chunks, CHUNK_COLUMNS),
                        ("partials", index.partials, PARTIAL_COLUMNS)]
            if self.linked:
                sections.append(("linked", {"key": [k for k, _s in index.linked],
                                            "size": [s for _k, s in index.linked]},
                                 LINKED_COLUMNS))
            for name, table, columns in sections:
                rows = len(next(iter(table.values())))
                writer.add((name,), [(n, k, table[n]) for n, k in columns], rows)
            writer.finish(kind="segment", **{CODEC_IN_CRC: True},
                          **({} if self.key is None else {FILE_KEY: self.key}))
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
    links = ("linked",) in footer.sections
    for name, columns in (("blocks", LINKED_BLOCK_COLUMNS if links else BLOCK_COLUMNS),
                          ("chunks", CHUNK_COLUMNS), ("partials", PARTIAL_COLUMNS),
                          ("linked", LINKED_COLUMNS)):
        ref = footer.sections.get((name,))
        if ref is None:
            if name == "linked":
                break
            raise CorruptionError(f"{where}: segment index has no {name} section")
        if [[c[0], declared_kind(c[1])] for c in ref.spec] != [list(c) for c in columns]:
            raise CorruptionError(f"{where}: segment {name} columns are not the expected ones")
        tables[name] = read_section(ref, read(ref.offset, ref.stored), f"{where} {name}")
    blocks = tables["blocks"]
    covered = footer.extra.get(CODEC_IN_CRC, False)
    if covered is not True and covered is not False:
        raise CorruptionError(f"{where}: segment footer's {CODEC_IN_CRC} must be true or "
                              f"absent, got {covered!r}")
    if not covered:
        blocks["crc"] = _with_codec(blocks["crc"], blocks["codec"])
    linked = []
    if links:
        found = tables["linked"]
        linked = [(checked(key, "segment", where), int(size))
                  for key, size in zip(found["key"], found["size"].tolist())]
    else:
        blocks["file"] = np.zeros(len(blocks["offset"]), np.int64)
    index = SegmentIndex(blocks, tables["chunks"], tables["partials"], linked)
    problem = index_problem(index, footer.end_of_payload)
    if problem:
        raise CorruptionError(f"{where}: {problem}")
    return index


def _with_codec(crc: np.ndarray, codec: np.ndarray) -> np.ndarray:
    """The crcs of a segment written before format version 6 as ``block_checksum`` gives them
    (its shuffled blocks' crc extended by their codec byte), so that every reader checks one
    way. Such a segment's codec bytes are as trustworthy as the file (nothing covers them)."""
    shuffled = np.flatnonzero((codec > CODEC_MASK) & (codec <= 255) & (crc >= 0) &
                              (crc < 2**32))  # others are refused by index_problem
    if not len(shuffled):
        return crc
    out = crc.copy()
    out[shuffled] = [with_codec_byte(c, k) for c, k in
                     zip(crc[shuffled].tolist(), codec[shuffled].tolist())]
    return out


def index_problem(index: SegmentIndex, end_of_payload: int) -> str | None:
    """What makes an index impossible for a payload ending at ``end_of_payload``, or None.
    (Each table's columns are reduced together, two numpy calls a table: every fresh reader
    checks every segment, and most segments of a store flushed often hold a few rows.)"""
    b, c, p = index.blocks, index.chunks, index.partials
    if any(size < len(MAGIC) for _key, size in index.linked) or len(
            {key for key, _size in index.linked}) != len(index.linked):
        return "a linked file is listed twice or has an impossible size"
    n_blocks, n_chunks = len(b["offset"]), len(c["block"])
    low, high = _extremes(b, ("file", "offset", "stored", "decoded", "codec", "crc"))
    if low["file"] < 0 or high["file"] > len(index.linked):
        return "a block names a linked file that the segment does not list"
    # where each block must end: this file's payload, or the linked file's size
    limit = np.array([end_of_payload, *(size for _key, size in index.linked)], np.int64)
    if low["offset"] < len(MAGIC) or low["stored"] < 0 or n_blocks and (
            b["offset"] + b["stored"] > limit[b["file"]]).any():
        return "a block lies outside the file"
    if low["decoded"] < 0 or high["decoded"] > MAX_DECODED_BLOCK:
        return "a block claims an impossible decoded size"
    if low["codec"] < 0 or high["codec"] > 255 or not _KNOWN_CODECS[b["codec"]].all() or \
            low["crc"] < 0 or high["crc"] > 2**32 - 1:
        return "a block has an unknown codec or checksum"
    low, high = _extremes(c, ("block", "offset", "length", "mask", "slot", "chunk"))
    if low["block"] < 0 or high["block"] > n_blocks - 1:
        return "a chunk names a block that does not exist"
    if low["offset"] < 0 or low["length"] < 0 or low["mask"] < 0:
        return "a chunk has a negative offset or length"
    if n_chunks:
        blocks = c["block"]
        ends = c["offset"] + c["length"] + c["mask"]
        if (ends > b["decoded"][blocks]).any():
            return "a chunk lies outside its block"
        # writers end every block with its last chunk: a block claiming more decoded bytes is
        # refused before anything is allocated for it (a decompression bomb)
        # (a linked block may end with chunks the merge left out, up to what linking allows)
        furthest = np.zeros(n_blocks, np.int64)
        np.maximum.at(furthest, blocks, ends)
        if index.linked:
            furthest = np.where(b["file"] > 0, furthest * LINKED_LIVE_SHARE, furthest)
        if (b["decoded"] > furthest).any():
            return "a block claims more decoded bytes than its chunks hold"
    elif n_blocks and high["decoded"] > 0:
        return "a block claims more decoded bytes than its chunks hold"
    if low["slot"] < 0 or low["chunk"] < 0:
        return "a chunk has a negative slot or chunk number"
    low, high = _extremes(p, ("row", "nulls", "valid"))
    if low["row"] < 0 or high["row"] > n_chunks - 1 or low["nulls"] < 0 or low["valid"] < 0:
        return "a statistics partial is out of range"
    return None


def _extremes(table: dict[str, np.ndarray], names: tuple[str, ...]
              ) -> tuple[dict[str, float], dict[str, float]]:
    """(min, max) of each of the integer columns ``names`` of a table, by name; for a table
    of no rows +inf and -inf, which pass every bound (as the empty columns do)."""
    if not len(table[names[0]]):
        return dict.fromkeys(names, math.inf), dict.fromkeys(names, -math.inf)
    grid = np.concatenate([table[name] for name in names], dtype=np.int64).reshape(
        len(names), -1)
    return (dict(zip(names, grid.min(axis=1).tolist())),
            dict(zip(names, grid.max(axis=1).tolist())))


# by codec byte: whether a writer makes it (a table, not np.isin: this runs for every segment a
# fresh reader opens, most of them a few rows)
_KNOWN_CODECS = np.zeros(256, bool)
_KNOWN_CODECS[list(BLOCK_CODEC_IDS)] = True


