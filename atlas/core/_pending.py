"""Writes between flushes: chunks packed into blocks of one pending segment per array name.

A chunk written whole is appended at once to the open block of its array name (a memory buffer
of the store's block size); a full block is compressed and written to the pending segment file,
so memory stays bounded by one block per array name being written. Statistics partials of the
chunks of a block are computed when it is sealed, one kernel call per dtype. A chunk of at
least a sixteenth of a block (``own_block``) gets a block of its own straight away.

A chunk written in parts is kept decoded in a small write-back cache ("dirty" chunks, bounded by
``dirty_budget`` bytes) so that piecewise writes do not re-encode it each time; the oldest dirty
chunk is encoded when the budget is exceeded, and all at flush.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from atlas import codecs, kernels
from atlas.core import _chunks
from atlas.core._index import ChunkIndex, SegmentSource, Source
from atlas.core._read import _distinct
from atlas.errors import CorruptionError
from atlas.format.keys import new_segment_key
from atlas.format.root import FileRef
from atlas.format.schema import Schema
from atlas.format.segment import OWN_BLOCK_SHARE, SegmentIndex, SegmentWriter, own_block
from atlas.storage import Storage

DIRTY_BUDGET = 64 << 20
FIRST_BUFFER_BYTES = 16 << 10  # an open block's first buffer; it doubles up to block_size
_UNKNOWN = -1  # nulls of a row whose partial is computed when its block is sealed
_I64 = np.int64
_ROW_COLUMNS = ("slot", "chunk", "block", "offset", "length", "mask", "schema", "nulls",
                "valid", "min", "max")


@dataclass
class DirtyChunk:
    array: str
    schema_id: int
    schema: Schema
    values: np.ndarray  # storage dtype, the chunk's clipped extent
    written: np.ndarray | None  # uint8 mask, None when every cell counts as written

    @property
    def nbytes(self) -> int:
        return self.values.size * (8 if self.schema.dtype.is_string else self.values.itemsize)


@dataclass
class FinishedSegment:
    array: str
    key: str
    path: str | None
    size: int
    index: SegmentIndex
    writer: SegmentWriter | None  # holds the file's lock until the commit (None: adopted)


class _SpillSource(Source):
    """Sealed blocks of a pending segment: its local file."""

    def __init__(self, writer: SegmentWriter):
        self.writer = writer
        self.cache_id = writer.path

    def fetch(self, offsets, lengths):
        return [self.writer.pread(o, n) for o, n in zip(offsets, lengths)]

    def where(self) -> str:
        return f"pending segment {self.writer.path}"


class _OpenBlock(Source):
    """The block still being filled: already decoded, in memory (copied when read, since later
    writes change it)."""

    decoded = True

    def __init__(self, data: bytes, path: str):
        self.data, self.path = data, path

    def fetch(self, offsets, lengths):
        return [self.data[o : o + n] for o, n in zip(offsets, lengths)]

    def where(self) -> str:
        return f"open block of pending segment {self.path}"


class _KeyIndex:
    """The latest row of a (slot, chunk): a bisection over ``slot << 20 | chunk`` while pairs
    come in ascending order, a dict (``late``) for the rest."""

    def __init__(self):
        self.keys = array("q")
        # the keys of stacked writes after ``keys`` (numpy, joined to it only when a key is
        # next added or looked up one by one)
        self._bulk: list[np.ndarray] = []
        self._bulk_rows = 0
        self.late: dict[tuple[int, int], int] = {}
        self._last = -1  # the last ordered key

    def __len__(self) -> int:
        """How many keys came in order."""
        return len(self.keys) + self._bulk_rows

    def _settle(self) -> None:
        for keys in self._bulk:
            self.keys.frombytes(keys.view(np.uint8))
        self._bulk, self._bulk_rows = [], 0

    def add(self, slot: int, chunk: int, row: int) -> None:
        key = (slot << 20) | chunk if chunk < (1 << 20) and slot < (1 << 42) else -1
        if key >= self._last and not self.late and row == len(self.keys) + self._bulk_rows:
            if self._bulk:
                self._settle()
            self.keys.append(key)
            self._last = key
        else:
            self.late[(slot, chunk)] = row

    def add_many(self, slots: np.ndarray, chunks: np.ndarray, first_row: int) -> None:
        if (not self.late and chunks.max(initial=0) < (1 << 20) and
                slots.max(initial=0) < (1 << 42) and first_row == len(self)):
            combined = np.ascontiguousarray((slots << 20) | chunks, np.int64)
            if not len(combined):
                return
            if combined[0] >= self._last and bool(np.all(combined[1:] >= combined[:-1])):
                self._bulk.append(combined)
                self._bulk_rows += len(combined)
                self._last = int(combined[-1])
                return
        self.late.update(zip(zip(slots.tolist(), chunks.tolist()),
                             range(first_row, first_row + len(slots))))

    def ordered(self) -> np.ndarray:
        """The keys that came in order, as one array (not to be changed)."""
        if not self.keys and len(self._bulk) == 1:
            return self._bulk[0]
        return np.concatenate([np.frombuffer(self.keys, _I64), *self._bulk])

    def find(self, slot: int, chunk: int) -> int:
        row = self.late.get((slot, chunk))
        if row is not None:
            return row
        if chunk >= (1 << 20) or slot >= (1 << 42):
            return -1
        if self._bulk:
            self._settle()
        key = (slot << 20) | chunk
        i = bisect_right(self.keys, key) - 1
        return i if i >= 0 and self.keys[i] == key else -1


_COL = {name: j for j, name in enumerate(_ROW_COLUMNS)}
_STRIDE = len(_ROW_COLUMNS)


class BulkRows:
    """The rows of one stacked write, a column each: an array per column that differs from
    row to row (filled batch by batch: ``filled`` rows so far), an int for a column every
    row shares (``chunk``, ``length``, ``mask``, ``schema``)."""

    def __init__(self, n: int, constants: dict[str, int],
                 filled_by_caller: dict[str, np.ndarray]):
        self.columns: dict[str, np.ndarray | int] = {}
        for name in _ROW_COLUMNS:
            if name in constants:
                self.columns[name] = int(constants[name])
            elif name in filled_by_caller:
                self.columns[name] = filled_by_caller[name]
            else:
                self.columns[name] = np.empty(n, _I64)
        self.filled = 0

    def column(self, name: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows [lo, hi) of a column (hi: the rows filled so far), read only: a column of
        one value is a broadcast view (np.full of 10^6 rows costs ~3 ms of page faults)."""
        hi = self.filled if hi is None else hi
        values = self.columns[name]
        if isinstance(values, int):
            return np.broadcast_to(_I64(values), (hi - lo,))
        return values[lo:hi]


class PendingSegment:
    """The pending segment of one array name: sealed blocks in a file, one open block.

    Its chunk rows are one ``array('q')`` of ``_ROW_COLUMNS`` interleaved (one ``extend`` per
    chunk: this is the hot path of a per-dataset ingest), seen as an (n, 11) numpy table,
    followed by the rows of stacked writes (:class:`BulkRows`, a column each).
    """

    def __init__(self, storage: Storage, key: str, codec_id: int, level: int, block_size: int,
                 shuffle: bool = False):
        self.key = key
        self.path = storage.spill_path(key)
        self.writer = SegmentWriter(self.path, key)
        self.codec_id, self.level, self.block_size = codec_id, level, block_size
        self.shuffle = shuffle
        # the open block, grown as chunks come (a block_size buffer per array name cost 1 MiB
        # of memory per name a handle wrote to, whatever it wrote)
        self.buffer = bytearray(min(block_size, FIRST_BUFFER_BYTES))
        self.used = 0
        self.open_width = 1  # the value size of the open block's first chunk (its shuffle)
        self._rows = array("q")
        # the rows of stacked writes, after those of _rows, joined to _rows only when a row is
        # appended one by one
        self._bulk: list[BulkRows] = []
        self.strings: dict[int, tuple[str, str]] = {}  # row -> (min, max) of string chunks
        self._open_first = 0  # rows before this are sealed
        self._keys = _KeyIndex()
        self.version = 0  # grows with every change, for caches of :meth:`index`
        self._index: tuple[int, ChunkIndex] | None = None

    def __len__(self) -> int:
        return len(self._rows) // _STRIDE + sum(bulk.filled for bulk in self._bulk)

    def block_codec(self, width: int) -> int:
        """The codec id of a new block of values ``width`` bytes wide."""
        return codecs.block_codec(self.codec_id, width if self.shuffle else 1)

    def _row_table(self) -> np.ndarray:
        """The rows appended one by one as a writable (n, 11) int64 view of ``_rows`` (drop it
        before appending more: an array('q') that exports its buffer cannot grow)."""
        return np.frombuffer(self._rows, _I64).reshape(-1, _STRIDE)

    def columns(self, names: tuple[str, ...] = _ROW_COLUMNS) -> dict[str, np.ndarray]:
        """Every row's values of the columns ``names``: views of ``_rows`` when every row is
        there (drop them before appending more), else views of one stacked write's columns
        (read them only), else new arrays."""
        parts = []
        if len(self._rows) or not self._bulk:
            table = self._row_table()
            parts.append({name: table[:, _COL[name]] for name in names})
        for bulk in self._bulk:
            parts.append({name: bulk.column(name) for name in names})
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in names}

    def start_bulk(self, n: int, constants: dict[str, int],
                   filled_by_caller: dict[str, np.ndarray]) -> BulkRows:
        """Room for the ``n`` rows of a stacked write, which :meth:`add_blocks` fills but for
        the columns ``filled_by_caller`` (arrays of ``n`` int64, each row's value in place
        before :meth:`add_blocks` adds it)."""
        if self._bulk and self._bulk[-1].filled == 0:
            self._bulk.pop()  # a stacked write that failed before its first rows
        bulk = BulkRows(n, constants, filled_by_caller)
        self._bulk.append(bulk)
        return bulk

    def _settle(self) -> None:
        """Rows appended one by one go to _rows: the rows of stacked writes join it first."""
        for bulk in self._bulk:
            block = np.empty((bulk.filled, _STRIDE), _I64)
            for name, j in _COL.items():
                block[:, j] = bulk.column(name)
            self._grow_rows(block.view(np.uint8).reshape(-1))
        self._bulk = []

    def _grow_rows(self, values) -> None:
        """Append to the row table (a tuple of ints, or a buffer of their bytes). A read on
        another thread (``batches`` reading ahead while the caller writes) may hold a view of
        it, which an ``array`` cannot grow under (BufferError, the write half done): then the
        rows go on in a copy, and the reader keeps the rows it had."""
        add = self._rows.extend if isinstance(values, tuple) else self._rows.frombytes
        try:
            add(values)
        except BufferError:
            self._rows = array("q", self._rows)
            self._grow_rows(values)

    def add(self, slot: int, chunk: int, raw, mask: bytes, schema_id: int, schema: Schema,
            partial: tuple | None) -> None:
        """Append one chunk's raw bytes (+ written mask); ``partial`` is its statistics when
        already known (strings, masked chunks), else computed when its block is sealed."""
        size = raw.nbytes if isinstance(raw, np.ndarray) else len(raw)
        n = size + len(mask)
        if own_block(n, self.block_size):
            self._own_block(slot, chunk, memoryview(raw).cast("B"), mask, schema_id, schema,
                            partial)
            return
        itemsize = 1 if schema.dtype.is_string else schema.dtype.itemsize
        offset = -(-self.used // itemsize) * itemsize
        if offset + n > self.block_size:
            self.seal()
            offset = 0
        if offset == 0:
            self.open_width = itemsize
        buf = self.buffer if offset + n <= len(self.buffer) else self._room(offset + n)
        buf[offset : offset + size] = memoryview(raw)
        if mask:
            buf[offset + size : offset + n] = mask
        self.used = offset + n
        self._append(slot, chunk, -1, offset, size, len(mask), schema_id, partial)

    def _room(self, end: int) -> bytearray:
        """The open block's buffer, at least ``end`` bytes long (doubled as it fills)."""
        have = len(self.buffer)
        if end > have:
            self.buffer.extend(bytes(min(max(end, 2 * have), self.block_size) - have))
        return self.buffer

    def add_whole(self, slot: int, raw: memoryview, schema_id: int, itemsize: int) -> bool:
        """:meth:`add` for the hot path: chunk 0 of a numeric array of one chunk, whose
        partial is computed at sealing; False when it does not fit that path."""
        n = raw.nbytes
        if n * OWN_BLOCK_SHARE >= self.block_size:
            return False
        offset = -(-self.used // itemsize) * itemsize
        if offset + n > self.block_size:
            self.seal()
            offset = 0
        if offset == 0:
            self.open_width = itemsize
        if offset + n > len(self.buffer):
            self._room(offset + n)
        self.buffer[offset : offset + n] = raw
        self.used = offset + n
        if self._bulk:
            self._settle()
        rows = self._rows
        row = len(rows) // _STRIDE
        rows.extend((slot, 0, -1, offset, n, 0, schema_id, _UNKNOWN, 0, 0, 0))
        self._keys.add(slot, 0, row)
        self.version += 1
        return True

    def _own_block(self, slot, chunk, raw, mask, schema_id, schema, partial) -> None:
        if partial is None:
            values = np.frombuffer(raw, schema.dtype.storage)
            partial = _chunks.partial_stats(schema, values, None)
        data = raw if not mask else bytes(raw) + mask
        codec = self.block_codec(1 if schema.dtype.is_string else schema.dtype.itemsize)
        stored = codecs.encode(codec, data, self.level)
        block = self.writer.write_block(stored, len(raw) + len(mask), codec)
        self._append(slot, chunk, block, 0, len(raw), len(mask), schema_id, partial)

    def _append(self, slot, chunk, block, offset, length, mask_len, schema_id, partial) -> None:
        if self._bulk:
            self._settle()
        row = len(self._rows) // _STRIDE
        values = (slot, chunk, block, offset, length, mask_len, schema_id,
                  *((_UNKNOWN, 0, 0, 0) if partial is None else partial[:4]))
        try:
            self._rows.extend(values)
        except BufferError:  # a read on another thread holds a view of it
            self._grow_rows(values)
        if partial is not None and (partial[4] or partial[5]):
            self.strings[row] = (partial[4], partial[5])
        self._keys.add(slot, chunk, row)
        self.version += 1

    def add_blocks(self, bulk: BulkRows, blocks: list[tuple], slots: np.ndarray) -> None:
        """Append whole compressed blocks of a stacked write and their chunk rows, the next
        rows of ``bulk`` (the last :meth:`start_bulk`, its caller's columns filled for these
        rows): ``blocks`` holds per block (stored bytes, decoded length, codec id, crc, number
        of rows), ``slots`` the slots of all their rows."""
        if not self._bulk or self._bulk[-1] is not bulk:
            raise ValueError("rows of a stacked write must follow its start_bulk")
        first = len(self)
        lo = at = bulk.filled
        for stored, decoded, codec, crc, rows in blocks:
            number = self.writer.write_block(stored, decoded, codec, crc)
            bulk.columns["block"][at : at + rows] = number
            at += rows
        bulk.columns["slot"][lo:at] = slots
        self._keys.add_many(bulk.column("slot", lo, at), bulk.column("chunk", lo, at), first)
        bulk.filled = at
        self.version += 1

    def seal(self, schema_of: Callable[[int], Schema] | None = None) -> None:
        """Compute the open block's pending partials, compress it and write it to the file."""
        if self.used == 0:
            return
        first, last = self._open_first, len(self)
        # the open block's rows were appended one by one (a stacked write's rows have their
        # blocks, and come after them until the next such row joins everything in _rows)
        table = self._row_table()
        open_rows = first + np.flatnonzero(table[first:, _COL["block"]] == -1)
        self._block_partials(table, open_rows, schema_of or self._schema_of)
        codec = self.block_codec(self.open_width)
        stored = codecs.encode(codec, memoryview(self.buffer)[: self.used], self.level)
        number = self.writer.write_block(stored, self.used, codec)
        table[open_rows, _COL["block"]] = number
        del table  # an array('q') that exports its buffer cannot grow
        self._open_first = last
        self.used = 0
        self.version += 1

    _schema_of: Callable[[int], Schema]  # set by PendingWrites

    def _block_partials(self, table: np.ndarray, open_rows: np.ndarray, schema_of) -> None:
        todo = open_rows[table[open_rows, _COL["nulls"]] == _UNKNOWN]
        if not len(todo):
            return
        schema_ids = table[todo, _COL["schema"]]
        offsets = table[todo, _COL["offset"]]
        lengths = table[todo, _COL["length"]]
        # one kernel call per (storage dtype, null rule): schemas sharing them go together
        groups: dict[tuple, list[int]] = {}
        schemas = {sid: schema_of(sid) for sid in _distinct(schema_ids)}
        for sid, schema in schemas.items():
            key = (schema.dtype.storage.str, _chunks.null_rule(schema.dtype))
            groups.setdefault(key, []).append(sid)
        for (storage, rule), sids in groups.items():
            pick = np.flatnonzero(np.isin(schema_ids, sids)) if len(groups) > 1 or len(
                sids) > 1 else np.arange(len(todo))
            dtype = np.dtype(storage)
            values = np.frombuffer(self.buffer, dtype, self.used // dtype.itemsize)
            fills = np.empty(len(pick), dtype)
            has = np.empty(len(pick), np.uint8)
            for sid in sids:
                mine = schema_ids[pick] == sid
                schema = schemas[sid]
                fills[mine] = _chunks.fill_scalar(schema.dtype, schema.fill)
                has[mine] = _chunks.has_fill(schema)
            counts, extremes = kernels.block_partials(
                values, offsets[pick] // dtype.itemsize, lengths[pick] // dtype.itemsize,
                fills, has, rule)
            del values
            kind = schemas[sids[0]].dtype
            valid = counts[:, 1]
            rows = todo[pick]
            table[rows, _COL["nulls"]] = counts[:, 0]
            table[rows, _COL["valid"]] = valid
            table[rows, _COL["min"]] = np.where(valid > 0, _bits(extremes[:, 0], kind), 0)
            table[rows, _COL["max"]] = np.where(valid > 0, _bits(extremes[:, 1], kind), 0)

    def find(self, slot: int, chunk: int) -> int:
        return self._keys.find(slot, chunk)

    def chunk_bytes(self, row: int) -> tuple[bytes, bytes]:
        """(values bytes, mask bytes) of one pending row."""
        if self._bulk:
            self._settle()
        at = row * _STRIDE
        rows = self._rows
        block, offset = rows[at + _COL["block"]], rows[at + _COL["offset"]]
        length, mask = rows[at + _COL["length"]], rows[at + _COL["mask"]]
        if block == -1:
            data = bytes(self.buffer[offset : offset + length + mask])
        else:
            stored = self.writer.read_block(block)
            decoded = self.writer.blocks.data["decoded"][block]
            try:
                data = codecs.decode(self.writer.blocks.data["codec"][block], stored, decoded)
            except CorruptionError as err:
                raise CorruptionError(f"pending segment {self.path}: {err}") from err
            data = bytes(memoryview(data)[offset : offset + length + mask])
        return data[:length], data[length:]

    def index(self) -> ChunkIndex:
        """The pending rows as a chunk index (newest row of a chunk wins)."""
        if self._index is not None and self._index[0] == self.version:
            return self._index[1]
        n = len(self)
        col = self.columns()
        blocks = self.writer.blocks.data
        n_blocks = len(blocks["offset"])
        block = np.where(col["block"] == -1, n_blocks, col["block"])
        ds, dc = np.diff(col["slot"]), np.diff(col["chunk"])
        if np.all((ds > 0) | ((ds == 0) & (dc > 0))):  # written in order, once each (usual)
            pick = np.arange(n)
        else:
            order = np.lexsort((np.arange(n), col["chunk"], col["slot"]))
            s, c = col["slot"][order], col["chunk"][order]
            keep = np.ones(n, bool)
            keep[:-1] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
            pick = order[keep]

        def written(name):
            return np.frombuffer(blocks[name], _I64).copy() if n_blocks else np.zeros(0, _I64)

        open_size = self.used
        partials = (col["nulls"][pick], col["valid"][pick], col["min"][pick],
                    col["max"][pick], col["nulls"][pick] != _UNKNOWN)
        index = ChunkIndex(
            col["slot"][pick], col["chunk"][pick], block[pick], col["offset"][pick],
            col["length"][pick], col["mask"][pick], lambda: partials,
            np.append(written("offset"), 0), np.append(written("stored"), open_size),
            np.append(written("decoded"), open_size), np.append(written("codec"), 0),
            np.append(written("crc"), 0),
            np.append(np.zeros(n_blocks, _I64), 1),
            [_SpillSource(self.writer), _OpenBlock(bytes(self.buffer[:open_size]), self.path)])
        index.pending_rows = pick  # row numbers in this log, for string statistics
        del col, ds, dc  # views of the rows: an array('q') exporting them cannot grow
        self._index = (self.version, index)
        return index

    def first_chunk_partials(self, slots: np.ndarray) -> tuple[np.ndarray, ...]:
        """(has, nulls, valid, min, max) of chunk 0 of each slot, newest row: ``has`` is False
        where no such row is pending or its partial is not known. Found with the ordered keys
        when every row came in order (a stacked write, a per-dataset ingest), without building
        :meth:`index`."""
        names = ("nulls", "valid", "min", "max")
        if self._keys.late or len(self._keys) != len(self):
            index = self.index()
            if not index.rows:
                return (np.zeros(len(slots), bool),) + tuple(np.zeros(len(slots), _I64)
                                                             for _ in names)
            rows = index.find(slots, np.zeros(len(slots), _I64))
            hit = rows >= 0
            rows = np.where(hit, rows, 0)
            has = hit & index.has_partial[rows]
            return (has, *(np.where(has, getattr(index, name)[rows], 0) for name in names))
        keys = self._keys.ordered()
        wanted = slots << 20
        if len(wanted) == len(keys) and np.array_equal(wanted, keys):  # every row, in order
            rows, hit = slice(None), np.ones(len(keys), bool)
        else:
            rows = np.searchsorted(keys, wanted, "right") - 1  # the newest of equal keys
            hit = rows >= 0
            hit[hit] = keys[rows[hit]] == wanted[hit]
            rows = np.where(hit, rows, 0)
        if not len(self):
            return (hit,) + tuple(np.zeros(len(slots), _I64) for _ in names)
        columns = self.columns(names)
        # views of a stacked write's columns are read only; views of _rows must not stay
        picked = [columns[name][rows] if self._bulk else columns[name][rows].copy()
                  for name in names]
        del columns
        has = hit & (picked[0] != _UNKNOWN)
        if not has.all():
            picked = [np.where(has, column, 0) for column in picked]
        return (has, *picked)

    def forget_index(self) -> None:
        """Drop the cached :meth:`index` (a flush has used it; it may be large)."""
        self._index = None

    def finish(self, schema_of: Callable[[int], Schema]) -> SegmentIndex:
        """Seal the open block, hand the rows to the segment writer and write its index."""
        self.seal(schema_of)
        self._index = None
        writer = self.writer
        if len(writer.chunks) or not len(self):
            return writer.finish()
        col = self.columns()
        schema_ids = col["schema"]
        multi = np.zeros(len(schema_ids), bool)
        for sid in _distinct(schema_ids):
            if schema_of(sid).n_chunks > 1:
                multi |= schema_ids == sid
        keep = np.flatnonzero(multi & (col["nulls"] != _UNKNOWN))
        chunks = {name: col[name] for name in ("slot", "chunk", "block", "offset", "length",
                                               "mask")}
        partials = {"row": keep, **{name: col[name][keep] for name in
                                    ("nulls", "valid", "min", "max")}}
        try:
            return writer.finish(chunks, partials)
        finally:
            del col, chunks  # views of the rows (see :meth:`columns`)


def _bits(values: np.ndarray, dtype) -> np.ndarray:
    """min/max values as the int64 bits the index keeps (see ``_chunks.to_bits``)."""
    if dtype.kind == "float":
        return values.astype(np.float64).view(_I64)
    if dtype.kind == "uint":
        return values.astype(np.uint64).view(_I64)
    return values.astype(_I64)


class PendingWrites:
    """Everything written since the last successful flush of one store handle."""

    def __init__(self, storage: Storage, codec: str, level: int, block_size: int,
                 schema_of: Callable[[int], Schema], next_generation: int,
                 dirty_budget: int = DIRTY_BUDGET, shuffle: bool = False):
        self.storage = storage
        self.next_generation = next_generation  # of the commit these writes are for
        self.codec_id = codecs.CODEC_IDS[codec]
        self.level = level
        self.block_size = block_size
        self.shuffle = shuffle  # new blocks of values wider than a byte are shuffled
        self.schema_of = schema_of
        self.dirty_budget = dirty_budget
        self.segments: dict[str, PendingSegment] = {}
        self._dirty: OrderedDict[tuple[int, int], DirtyChunk] = OrderedDict()
        self._dirty_bytes = 0
        self.finished: list[FinishedSegment] = []
        self._published: set[str] = set()
        # a commit naming the finished segments raised without saying whether it landed: a
        # root may reference them, so dropping the handle must not delete them
        self.in_doubt = False

    def __bool__(self) -> bool:
        return bool(self.segments or self._dirty or self.finished)

    # -- writing -------------------------------------------------------------------------------

    def put(self, array: str, schema_id: int, schema: Schema, slot: int, chunk: int,
            values: np.ndarray, written: np.ndarray | None, generation: int) -> None:
        """Encode a chunk and append it to the pending segment of ``array``."""
        if written is not None and written.all():
            written = None
        partial = None
        if schema.dtype.is_string or written is not None:
            partial = _chunks.partial_stats(schema, values, written)
        raw = _chunks.encode_values(schema, values)
        segment = self._segment(array, generation)
        segment.add(slot, chunk, raw, _chunks.pack_mask(written), schema_id, schema, partial)
        if self._dirty:
            self._forget_dirty((slot, chunk))

    def put_whole(self, array: str, schema_id: int, slot: int, values: np.ndarray) -> bool:
        """:meth:`put` of a whole array of one chunk with numeric values (the hot path); False
        when it does not take this path (not C-contiguous, a block of its own), nothing done."""
        segment = self.segments.get(array)
        if segment is None:
            segment = self._segment(array, self.next_generation)
        data = values.view(np.int64) if values.dtype.kind == "M" else values
        try:
            raw = memoryview(data).cast("B")
        except (TypeError, ValueError):  # not C-contiguous
            return False
        if not segment.add_whole(slot, raw, schema_id, values.itemsize):
            return False
        if self._dirty:
            self._forget_dirty((slot, 0))
        return True

    def put_dirty(self, key: tuple[int, int], chunk: DirtyChunk, generation: int) -> None:
        """Keep a partly written chunk decoded; encode the oldest ones when over budget."""
        self._forget_dirty(key)
        self._dirty[key] = chunk
        self._dirty_bytes += chunk.nbytes
        while self._dirty_bytes > self.dirty_budget and len(self._dirty) > 1:
            self._encode_oldest(generation)

    def settle(self, slot: int, generation: int) -> None:
        """Encode the dirty chunks of ``slot``: a resize moves chunks that are index rows."""
        for key in [k for k in self._dirty if k[0] == slot]:
            chunk = self._dirty[key]
            self.put(chunk.array, chunk.schema_id, chunk.schema, slot, key[1], chunk.values,
                     chunk.written, generation)

    def _encode_oldest(self, generation: int) -> None:
        (slot, chunk_id), chunk = next(iter(self._dirty.items()))
        self.put(chunk.array, chunk.schema_id, chunk.schema, slot, chunk_id, chunk.values,
                 chunk.written, generation)

    def _forget_dirty(self, key: tuple[int, int]) -> None:
        old = self._dirty.pop(key, None)
        if old is not None:
            self._dirty_bytes -= old.nbytes

    def _segment(self, array: str, generation: int) -> PendingSegment:
        found = self.segments.get(array)
        if found is None:
            found = PendingSegment(self.storage, new_segment_key(generation), self.codec_id,
                                   self.level, self.block_size, self.shuffle)
            found._schema_of = self.schema_of
            self.segments[array] = found
        return found

    # -- reading back --------------------------------------------------------------------------

    def dirty_of(self, array: str) -> list[tuple[tuple[int, int], DirtyChunk]]:
        return [(k, c) for k, c in self._dirty.items() if c.array == array]

    def index(self, array: str) -> ChunkIndex | None:
        segment = self.segments.get(array)
        return None if segment is None or not len(segment) else segment.index()

    def lookup(self, array: str, schema: Schema, slot: int, chunk: int,
               extent: tuple[int, ...]):
        """(values, written) of a pending chunk, or None when this chunk is not pending."""
        dirty = self._dirty.get((slot, chunk))
        if dirty is not None:
            return dirty.values, dirty.written
        segment = self.segments.get(array)
        row = -1 if segment is None else segment.find(slot, chunk)
        if row < 0:
            return None
        raw, mask = segment.chunk_bytes(row)
        where = f"pending segment {segment.path}"
        values = _chunks.decode_values(schema, raw, extent, where)
        written = _chunks.unpack_mask(mask, extent) if mask else None
        return values, written

    # -- flushing ------------------------------------------------------------------------------

    def dirty_arrays(self) -> set[str]:
        """The array names with chunks not encoded yet."""
        return {chunk.array for chunk in self._dirty.values()}

    def drop_slots(self, slots: set[int]) -> None:
        """Forget dirty chunks of deleted arrays (their encoded bytes become dead space)."""
        for key in [k for k in self._dirty if k[0] in slots]:
            self._forget_dirty(key)

    def prepare(self, generation: int) -> None:
        """Encode every dirty chunk and seal every open block: every pending chunk has its
        statistics partial from here on."""
        while self._dirty:
            self._encode_oldest(generation)
        for segment in self.segments.values():
            segment.seal(self.schema_of)

    def spill_paths(self) -> list[str]:
        """The local files of the open pending segments."""
        return [segment.path for segment in self.segments.values() if segment.path]

    def first_chunk_partials(self, array: str, slots: np.ndarray) -> tuple[np.ndarray, ...]:
        """See :meth:`PendingSegment.first_chunk_partials` (``has`` all False without one)."""
        segment = self.segments.get(array)
        if segment is None or not len(segment):
            return (np.zeros(len(slots), bool),) + tuple(np.zeros(len(slots), _I64)
                                                         for _ in range(4))
        return segment.first_chunk_partials(slots)

    def forget_index(self, array: str) -> None:
        segment = self.segments.get(array)
        if segment is not None:
            segment.forget_index()

    def string_partial(self, array: str) -> Callable[[int], tuple[str, str] | None]:
        """(min, max) of a string chunk by its row in :meth:`index`, where it was kept."""
        segment = self.segments.get(array)
        if segment is None:
            return lambda row: None
        # the index is built when a string chunk asks (cached while nothing is written)
        return lambda row: segment.strings.get(int(segment.index().pending_rows[row]))

    def finish(self, generation: int) -> list[FinishedSegment]:
        """Encode every dirty chunk, close every pending segment; returns all not yet committed."""
        self.prepare(generation)
        for name, segment in list(self.segments.items()):
            index = segment.finish(self.schema_of)
            self.finished.append(FinishedSegment(name, segment.key, segment.path,
                                                 segment.writer.size, index, segment.writer))
            del self.segments[name]
        # a flush that failed part-way (an upload error) publishes the rest when retried
        self.storage.publish_many([(seg.key, seg.path) for seg in self.finished
                                   if seg.key not in self._published], self._published.add)
        return self.finished

    def written_slots(self) -> dict[str, set[int]]:
        """The slots with chunks in the open pending segments or dirty, per array name."""
        out: dict[str, set[int]] = {}
        for array, segment in self.segments.items():
            out.setdefault(array, set()).update(segment.columns(("slot",))["slot"].tolist())
        for (slot, _chunk), chunk in self._dirty.items():
            out.setdefault(chunk.array, set()).add(slot)
        return out

    def unsent(self, array: str) -> list[tuple[SegmentIndex, Source]]:
        """(index, source) of the finished segments of ``array`` that no commit references yet
        (a flush failed after finishing them), oldest first."""
        return [(seg.index, _SpillSource(seg.writer) if seg.writer is not None
                 else SegmentSource(self.storage, FileRef(seg.key, seg.size)))
                for seg in self.finished if seg.array == array]

    def adopt(self, array: str, key: str, size: int, index: SegmentIndex) -> None:
        """A finished segment another process wrote for this handle's own slots (a dask
        worker writing blocks of a pending array): committed with the next flush."""
        self.finished.append(FinishedSegment(array, key, None, size, index, None))
        self._published.add(key)

    def committed(self, next_generation: int) -> None:
        """The root now references every finished segment: start afresh."""
        self.next_generation = next_generation
        for seg in self.finished:
            if seg.writer is not None:
                self.storage.release_spill(seg.key, seg.path)
                seg.writer.release()
        self.finished = []
        self._published = set()
        self.in_doubt = False

    def abandon(self) -> None:
        """Drop everything (the handle is discarded without flushing)."""
        for segment in self.segments.values():
            segment.writer.release()
            self.storage.discard(segment.key, segment.path)
        for seg in self.finished:
            if seg.writer is None:  # adopted: written by another process for this handle
                try:
                    self.storage.delete(seg.key)
                except OSError:
                    pass  # an orphan: a later sweep removes it
                continue
            seg.writer.release()
            if self.in_doubt and seg.key in self._published:
                # perhaps committed (a lost response): an orphan sweep judges it by the root
                self.storage.release_spill(seg.key, seg.path)
            else:
                self.storage.discard(seg.key, seg.path)
        self.segments.clear()
        self.finished = []
        self._published = set()
        self._dirty.clear()
        self._dirty_bytes = 0
