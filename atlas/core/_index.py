"""Chunk indexes: where each (slot, chunk) of an array name lies, as numpy columns.

A :class:`ChunkIndex` is one merged view, sorted by (slot, chunk) with one row per chunk (the
newest), over a set of blocks that live in :class:`Source`s. The committed index of an array
name merges the indexes of its segments (:class:`IndexCache`, cached per handle: segments are
immutable); a handle's pending writes form another (``atlas.core._pending``), searched first.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlas._pools import io_pool, worker_pool
from atlas.errors import CorruptionError, StaleHandleError
from atlas.format import retired as retired_format
from atlas.format.catalog import MAGIC as PART_MAGIC
from atlas.format.catalog import check_footer
from atlas.format.container import FOOTER_PROBE, Footer, check_file_key, parse_footer
from atlas.format.root import FileRef
from atlas.format.segment import MAGIC as SEGMENT_MAGIC
from atlas.format.segment import SegmentIndex, parse_index
from atlas.storage import Storage

_I64 = np.int64


class Source:
    """Where blocks are fetched from. ``cache_id`` names it in the decoded-block cache (None:
    never cache, its blocks may change)."""

    cache_id: str | None = None
    decoded = False  # True: the bytes fetched are already decoded (an open pending block)

    def fetch(self, offsets: list[int], lengths: list[int]) -> list:
        raise NotImplementedError

    def tail(self, n: int) -> int:
        """Bytes after block ``n``'s frame that are stored as they are (only format 1 has)."""
        return 0

    def where(self) -> str:
        raise NotImplementedError


class SegmentSource(Source):
    """A committed segment, read through the storage (coalesced ranged reads)."""

    def __init__(self, storage: Storage, ref: FileRef):
        self.storage, self.key, self.size = storage, ref.key, ref.size
        self.cache_id = ref.key

    def fetch(self, offsets, lengths):
        return self.storage.get_ranges(self.key, offsets, lengths, self.size)

    def where(self) -> str:
        return f"{self.storage.location}/{self.key}"

    def linked(self, key: str, size: int) -> "SegmentSource":
        """The source of a file this segment links blocks of (same storage)."""
        return SegmentSource(self.storage, FileRef(key, size))


_PARTIALS = ("nulls", "valid", "min", "max", "has_partial")


@dataclass
class ChunkIndex:
    """Chunk rows sorted by (slot, chunk), and the blocks they point into. The statistics
    partials (``nulls``, ``valid``, ``min``, ``max``, ``has_partial``, per row) are built on
    first use from ``partials`` (a callable): reads never need them."""

    slot: np.ndarray
    chunk: np.ndarray
    block: np.ndarray  # row of ``blocks``
    offset: np.ndarray  # in the decoded block
    length: np.ndarray
    mask: np.ndarray
    partials: Any  # () -> (nulls, valid, min, max, has_partial)
    # blocks: offset/stored in their source, decoded length, codec, crc, source number
    block_offset: np.ndarray
    block_stored: np.ndarray
    block_decoded: np.ndarray
    block_codec: np.ndarray
    block_crc: np.ndarray
    block_source: np.ndarray
    sources: list[Source] = field(default_factory=list)

    def __getattr__(self, name: str):
        if name not in _PARTIALS:
            raise AttributeError(name)
        for key, value in zip(_PARTIALS, self.partials()):
            self.__dict__[key] = value
        return self.__dict__[name]

    @property
    def rows(self) -> int:
        return len(self.slot)

    @classmethod
    def empty(cls) -> "ChunkIndex":
        z = np.zeros(0, _I64)
        return cls(z, z, z, z, z, z, lambda: (z, z, z, z, np.zeros(0, bool)), z, z, z, z, z, z,
                   [])

    def find(self, slots: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        """Row of each wanted (slot, chunk), -1 where this index has none."""
        n = len(slots)
        if self.rows == 0 or n == 0:
            return np.full(n, -1, _I64)
        if self.is_every_row(slots, chunks):
            return np.arange(n, dtype=_I64)
        lo = np.searchsorted(self.slot, slots, "left")
        if not chunks.any() and self.single_chunk:  # a slot has one row at most: no run
            at = np.minimum(lo, self.rows - 1)
            return np.where(self.slot[at] == slots, at, -1)
        hi = np.searchsorted(self.slot, slots, "right")
        # bisect every wanted chunk inside its slot's run, all at once
        end = hi.copy()
        last = self.rows - 1
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            right = active & (self.chunk[np.minimum(mid, last)] < chunks)
            lo = np.where(right, mid + 1, lo)
            hi = np.where(active & ~right, mid, hi)
        hit = (lo < end) & (self.chunk[np.minimum(lo, last)] == chunks)
        return np.where(hit, lo, -1).astype(_I64)

    def is_every_row(self, slots: np.ndarray, chunks: np.ndarray | int) -> bool:
        """Whether the wanted (slot, chunk) pairs (``chunks`` may be one chunk for all) are
        this index's rows exactly, in its order: a read of everything, planned without a
        search or a copy of the index's columns."""
        return (len(slots) == self.rows and self.single_chunk and not np.any(chunks)
                and np.array_equal(slots, self.slot))

    @property
    def single_chunk(self) -> bool:
        """Every slot has only chunk 0 (arrays of one chunk): a slot search finds the row."""
        found = getattr(self, "_single", None)
        if found is None:
            found = self._single = not self.chunk.any()
        return found

    def rows_of_slot(self, slot: int) -> slice:
        return slice(int(np.searchsorted(self.slot, slot, "left")),
                     int(np.searchsorted(self.slot, slot, "right")))


def slot_problem(index: ChunkIndex, next_slot: int) -> str | None:
    """What is wrong with the slots of a merged index for a catalog that has handed out slots
    below ``next_slot`` (a row of another slot would hide the chunk it claims to be), or
    None. The rows are sorted by slot: the last is the largest."""
    if index.rows and int(index.slot[-1]) >= next_slot:
        return (f"{index.sources[int(index.block_source[int(index.block[-1])])].where()} holds "
                f"a chunk of slot {int(index.slot[-1])}, not below the catalog's counter "
                f"{next_slot}")
    return None


def merge_indexes(indexes: list[SegmentIndex], sources: list[Source]) -> ChunkIndex:
    """One sorted index over segments (oldest first): the newest row of a (slot, chunk) wins,
    also within one segment. Files the segments link blocks of are added to the sources."""
    if not indexes:
        out = ChunkIndex.empty()
        out.sources = sources
        return out
    sources, block_source = _block_sources(indexes, sources)
    if len(indexes) == 1:  # one segment (a compacted store): its columns as they are
        ix = indexes[0]
        c = ix.chunks
        order = _order(c["slot"], c["chunk"])
        pick = slice(None) if order is None else _newest(order, c["slot"], c["chunk"])
        b = ix.blocks
        return ChunkIndex(c["slot"][pick], c["chunk"][pick], c["block"][pick],
                          c["offset"][pick], c["length"][pick], c["mask"][pick],
                          lambda: _spread_partials(indexes, pick), b["offset"], b["stored"],
                          b["decoded"], b["codec"], b["crc"], block_source, sources)
    block_base = np.cumsum([0] + [ix.n_blocks for ix in indexes[:-1]])
    cat = np.concatenate
    slot = cat([ix.chunks["slot"] for ix in indexes])
    chunk = cat([ix.chunks["chunk"] for ix in indexes])
    block = cat([ix.chunks["block"] + base for ix, base in zip(indexes, block_base)])
    order = _order(slot, chunk)
    pick = slice(None) if order is None else _newest(order, slot, chunk)
    return ChunkIndex(
        slot[pick], chunk[pick], block[pick],
        cat([ix.chunks["offset"] for ix in indexes])[pick],
        cat([ix.chunks["length"] for ix in indexes])[pick],
        cat([ix.chunks["mask"] for ix in indexes])[pick],
        lambda: _spread_partials(indexes, pick),
        cat([ix.blocks["offset"] for ix in indexes]), cat([ix.blocks["stored"] for ix in indexes]),
        cat([ix.blocks["decoded"] for ix in indexes]), cat([ix.blocks["codec"] for ix in indexes]),
        cat([ix.blocks["crc"] for ix in indexes]), block_source, sources)


def _block_sources(indexes: list[SegmentIndex], sources: list[Source]
                   ) -> tuple[list[Source], np.ndarray]:
    """The sources of the merged index (the segments', then each file they link, once) and
    the source number of every block, in the order of the segments' blocks."""
    out = list(sources)
    numbers = {}  # linked key -> source number
    columns = []
    for i, ix in enumerate(indexes):
        if not ix.linked:
            columns.append(np.full(ix.n_blocks, i, _I64))
            continue
        mine = [i]
        for key, size in ix.linked:
            if key not in numbers:
                numbers[key] = len(out)
                out.append(sources[i].linked(key, size))
            mine.append(numbers[key])
        columns.append(np.array(mine, _I64)[ix.blocks["file"]])
    return out, (columns[0] if len(columns) == 1 else np.concatenate(columns))


def _newest(order: np.ndarray, slot: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """Of rows in ``order`` (sorted by slot, chunk, age), the last of each (slot, chunk)."""
    s, c = slot[order], chunk[order]
    keep = np.ones(len(order), bool)
    keep[:-1] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
    return order[keep]


def _spread_partials(indexes: list[SegmentIndex], pick) -> tuple:
    """The segments' partials as columns over the merged rows (0 and False where none)."""
    n = sum(ix.rows for ix in indexes)
    nulls, valid = np.zeros(n, _I64), np.zeros(n, _I64)
    lo, hi = np.zeros(n, _I64), np.zeros(n, _I64)
    has = np.zeros(n, bool)
    base = 0
    for ix in indexes:
        rows = ix.partials["row"] + base
        nulls[rows], valid[rows] = ix.partials["nulls"], ix.partials["valid"]
        lo[rows], hi[rows] = ix.partials["min"], ix.partials["max"]
        has[rows] = True
        base += ix.rows
    return nulls[pick], valid[pick], lo[pick], hi[pick], has[pick]


def _order(slot: np.ndarray, chunk: np.ndarray) -> np.ndarray | None:
    """Row order sorting by (slot, chunk) with later rows after earlier ones of the same pair;
    None when the rows are sorted and unique already (one compacted segment)."""
    n = len(slot)
    if n < 2:
        return None
    ds, dc = np.diff(slot), np.diff(chunk)
    if np.all((ds > 0) | ((ds == 0) & (dc > 0))):
        return None
    if chunk.max(initial=0) < (1 << 20) and slot.max(initial=0) < (1 << 42):
        # one int64 key: a stable sort of a few sorted runs is a linear merge
        return np.argsort((slot << 20) | chunk, kind="stable")
    return np.lexsort((np.arange(n), chunk, slot))


class IndexCache:
    """Segment footers by key and merged indexes by array name, for one storage."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._footers: dict[str, Footer] = {}
        self._segments: dict[str, SegmentIndex] = {}
        self._merged: dict[str, tuple[tuple[str, ...], ChunkIndex]] = {}
        self._retired: dict[str, list[tuple[str, float, int]]] = {}
        self._lock = threading.Lock()

    def footer(self, ref: FileRef, magic: bytes) -> Footer:
        """The footer of an immutable file (a segment or a catalog part), read once."""
        found = self._footers.get(ref.key)
        if found is None:
            found = self._footers[ref.key] = read_footer(self.storage, ref, magic)
        return found

    def footers(self, refs: list[FileRef], magic: bytes) -> list[Footer]:
        """Footers of many files, the missing ones fetched concurrently (one round trip)."""
        missing = [r for r in refs if r.key not in self._footers]
        if len(missing) > 1 and self.storage.remote:
            for ref, footer in zip(missing, io_pool().map(
                    lambda r: read_footer(self.storage, r, magic), missing)):
                self._footers[ref.key] = footer
        return [self.footer(r, magic) for r in refs]

    def chunk_rows(self, ref: FileRef) -> int:
        """How many chunk rows a segment lists, from its footer alone (no index parsed)."""
        found = self._segments.get(ref.key)
        if found is not None:
            return found.rows
        section = self.footer(ref, SEGMENT_MAGIC).sections.get(("chunks",))
        if section is None:
            raise CorruptionError(f"{self.storage.location}/{ref.key}: segment index has no "
                                  "chunks section")
        return section.rows

    def segment(self, ref: FileRef) -> SegmentIndex:
        found = self._segments.get(ref.key)
        if found is None:
            footer = self.footer(ref, SEGMENT_MAGIC)
            where = f"{self.storage.location}/{ref.key}"
            found = remapped(parse_index(footer, footer.reader(
                lambda o, n: self.storage.get_range(ref.key, o, n, ref.size)), where), ref)
            self._segments[ref.key] = found
        return found

    def retired(self, ref: FileRef) -> list[tuple[str, float, int]]:
        """The entries of a retired list (``atlas.format.retired``), read once."""
        found = self._retired.get(ref.key)
        if found is None:
            where = f"{self.storage.location}/{ref.key}"
            try:
                data = self.storage.get(ref.key)
            except FileNotFoundError as err:
                raise StaleHandleError(
                    f"{where}: retired list is gone. A newer commit replaced it (then the "
                    "newest root names what it held), or the store lost it (verify() reports "
                    "it)") from err
            if len(data) != ref.size:
                raise CorruptionError(f"{where}: file is {len(data)} bytes, the root records "
                                      f"{ref.size}")
            found = self._retired[ref.key] = retired_format.decode(data, where)
        return found

    def add_retired(self, ref: FileRef, entries: list[tuple[str, float, int]]) -> None:
        """Seed the cache with a retired list this handle just wrote."""
        self._retired[ref.key] = entries

    def add(self, ref: FileRef, footer: Footer | None, index: SegmentIndex | None) -> None:
        """Seed the cache with a file this handle just wrote."""
        if footer is not None:
            self._footers[ref.key] = footer
        if index is not None:
            self._segments[ref.key] = index

    def merged(self, array: str, refs: list[FileRef]) -> ChunkIndex:
        """The committed index of ``array`` over its segments ``refs`` (oldest first)."""
        keys = tuple(r.key for r in refs)
        cached = self._merged.get(array)
        if cached is not None and cached[0] == keys:
            return cached[1]
        with self._lock:
            cached = self._merged.get(array)  # another thread may have just built it
            if cached is not None and cached[0] == keys:
                return cached[1]
            self.footers([r for r in refs if r.key not in self._segments], SEGMENT_MAGIC)
            indexes = [self.segment(r) for r in refs]
            merged = merge_indexes(indexes, [SegmentSource(self.storage, r) for r in refs])
            self._merged[array] = (keys, merged)
        return merged

    def prefetch_merged(self, array: str, refs: list[FileRef]) -> Future | None:
        """Start building :meth:`merged` on a worker thread (its errors are raised by the call
        that needs the index, which builds it again); None when it is built already."""
        keys = tuple(r.key for r in refs)
        cached = self._merged.get(array)
        if refs and (cached is None or cached[0] != keys):
            try:
                return worker_pool().submit(self.merged, array, refs)
            except RuntimeError:  # the interpreter is shutting down: built when needed
                pass
        return None

    def forget(self, keys) -> None:
        for key in keys:
            self._footers.pop(key, None)
            self._segments.pop(key, None)
            self._retired.pop(key, None)


def remapped(index: SegmentIndex, ref: FileRef) -> SegmentIndex:
    """``index`` with its slots as the commit numbered them (``FileRef.remap``): slots are
    numbered by the writer before it commits, and a rebase or a merge of forked writers' work
    shifts the new ones. The shift keeps the rows sorted."""
    if ref.remap is None:
        return index
    first, shift = ref.remap
    slot = index.chunks["slot"]
    chunks = dict(index.chunks, slot=np.where(slot >= first, slot + shift, slot))
    return SegmentIndex(index.blocks, chunks, index.partials, index.linked)


def read_footer(storage: Storage, ref: FileRef, magic: bytes) -> Footer:
    """One ranged read of a file's tail: trailer and footer together (a second read only for a
    footer bigger than the probe). ``verify`` checks the magic at the start as well."""
    where = f"{storage.location}/{ref.key}"
    if ref.size < len(magic):
        raise CorruptionError(f"{where}: file is {ref.size} bytes, too short to be one")
    tail_start = max(0, ref.size - FOOTER_PROBE)
    tail = memoryview(storage.get_range(ref.key, tail_start, ref.size - tail_start, ref.size))
    footer = parse_footer(tail, tail_start, ref.size,
                          lambda o, n: storage.get_range(ref.key, o, n, ref.size), where)
    check_file_key(footer, ref.key, where)
    # keep a copy of the sections and footer only: a view of a local file's mapping would keep
    # the file mapped (its disk space held) after a compaction deleted it
    keep = max(footer.end_of_payload, tail_start)
    footer.tail, footer.tail_start = bytes(tail[keep - tail_start :]), keep
    if magic == PART_MAGIC:
        check_footer(footer, where)  # every section a table: readers index by its id
    return footer
