"""Writes between flushes: chunks packed into blocks of one pending segment per array name.

A chunk written whole is appended at once to the open block of its array name (a memory buffer
of the store's block size); a full block is compressed and written to the pending segment file,
so memory stays bounded by one block per array name being written. Statistics partials of the
chunks of a block are computed when it is sealed, one kernel call per dtype. A chunk at least a
block big gets a block of its own straight away.

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
from atlas.core._index import ChunkIndex, Source
from atlas.errors import CorruptionError
from atlas.format.keys import new_segment_key
from atlas.format.schema import Schema
from atlas.format.segment import SegmentIndex, SegmentWriter
from atlas.storage import Storage

DIRTY_BUDGET = 64 << 20
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
    path: str
    size: int
    index: SegmentIndex
    writer: SegmentWriter  # holds the file's lock until the commit


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
    """The latest row of a (slot, chunk): a bisection while pairs come in ascending order,
    a dict for the rest."""

    def __init__(self):
        self._keys = array("q")
        self._late: dict[tuple[int, int], int] = {}

    def add(self, slot: int, chunk: int, row: int) -> None:
        key = (slot << 20) | chunk if chunk < (1 << 20) and slot < (1 << 42) else -1
        keys = self._keys
        if not self._late and key >= 0 and (not keys or key >= keys[-1]) and row == len(keys):
            keys.append(key)
        else:
            self._late[(slot, chunk)] = row

    def add_many(self, slots: np.ndarray, chunks: np.ndarray, first_row: int) -> None:
        keys = self._keys
        if (not self._late and chunks.max(initial=0) < (1 << 20) and
                slots.max(initial=0) < (1 << 42) and first_row == len(keys)):
            combined = (slots << 20) | chunks
            if (not keys or combined[0] >= keys[-1]) and bool(
                    np.all(combined[1:] >= combined[:-1])):
                keys.frombytes(combined.astype(np.int64).tobytes())
                return
        self._late.update(zip(zip(slots.tolist(), chunks.tolist()),
                              range(first_row, first_row + len(slots))))

    def find(self, slot: int, chunk: int) -> int:
        row = self._late.get((slot, chunk))
        if row is not None:
            return row
        if chunk >= (1 << 20) or slot >= (1 << 42):
            return -1
        key = (slot << 20) | chunk
        i = bisect_right(self._keys, key) - 1
        return i if i >= 0 and self._keys[i] == key else -1


class PendingSegment:
    """The pending segment of one array name: sealed blocks in a file, one open block."""

    def __init__(self, storage: Storage, key: str, codec_id: int, level: int, block_size: int):
        self.key = key
        self.path = storage.spill_path(key)
        self.writer = SegmentWriter(self.path)
        self.codec_id, self.level, self.block_size = codec_id, level, block_size
        self.buffer = np.empty(block_size, np.uint8)
        self.used = 0
        self.rows = {name: array("q") for name in _ROW_COLUMNS}
        self.strings: dict[int, tuple[str, str]] = {}  # row -> (min, max) of string chunks
        self._open_first = 0  # rows before this are sealed
        self._keys = _KeyIndex()
        self.version = 0  # grows with every change, for caches of :meth:`index`
        self._index: tuple[int, ChunkIndex] | None = None

    def __len__(self) -> int:
        return len(self.rows["slot"])

    def add(self, slot: int, chunk: int, raw, mask: bytes, schema_id: int, schema: Schema,
            partial: tuple | None) -> None:
        """Append one chunk's raw bytes (+ written mask); ``partial`` is its statistics when
        already known (strings, masked chunks), else computed when its block is sealed."""
        raw = memoryview(raw).cast("B")
        n = len(raw) + len(mask)
        if n >= self.block_size:
            self._own_block(slot, chunk, raw, mask, schema_id, schema, partial)
            return
        itemsize = 1 if schema.dtype.is_string else schema.dtype.itemsize
        offset = -(-self.used // itemsize) * itemsize
        if offset + n > self.block_size:
            self.seal()
            offset = 0
        buf = self.buffer
        buf[offset : offset + len(raw)] = raw
        if mask:
            buf[offset + len(raw) : offset + n] = np.frombuffer(mask, np.uint8)
        self.used = offset + n
        self._append(slot, chunk, -1, offset, len(raw), len(mask), schema_id, partial)

    def _own_block(self, slot, chunk, raw, mask, schema_id, schema, partial) -> None:
        if partial is None:
            values = np.frombuffer(raw, schema.dtype.storage)
            partial = _chunks.partial_stats(schema, values, None)
        data = raw if not mask else bytes(raw) + mask
        stored = codecs.encode(self.codec_id, data, self.level)
        block = self.writer.write_block(stored, len(raw) + len(mask), self.codec_id)
        self._append(slot, chunk, block, 0, len(raw), len(mask), schema_id, partial)

    def _append(self, slot, chunk, block, offset, length, mask_len, schema_id, partial) -> None:
        rows = self.rows
        row = len(rows["slot"])
        nulls, valid, lo, hi = (_UNKNOWN, 0, 0, 0) if partial is None else partial[:4]
        for name, value in zip(_ROW_COLUMNS, (slot, chunk, block, offset, length, mask_len,
                                              schema_id, nulls, valid, lo, hi)):
            rows[name].append(value)
        if partial is not None and (partial[4] or partial[5]):
            self.strings[row] = (partial[4], partial[5])
        self._keys.add(slot, chunk, row)
        self.version += 1

    def add_blocks(self, stored: list, decoded: list[int], rows: dict[str, np.ndarray]) -> None:
        """Append whole compressed blocks (a stacked write) and their chunk rows: ``rows`` has
        every row column, ``block`` numbering the given blocks from 0."""
        numbers = np.array([self.writer.write_block(data, size, self.codec_id)
                            for data, size in zip(stored, decoded)], _I64)
        first = len(self)
        rows = dict(rows, block=numbers[rows["block"]])
        for name in _ROW_COLUMNS:
            self.rows[name].frombytes(np.ascontiguousarray(rows[name], _I64).tobytes())
        self._keys.add_many(np.asarray(rows["slot"], _I64), np.asarray(rows["chunk"], _I64),
                            first)
        self.version += 1

    def seal(self, schema_of: Callable[[int], Schema] | None = None) -> None:
        """Compute the open block's pending partials, compress it and write it to the file."""
        if self.used == 0:
            return
        rows = self.rows
        first, last = self._open_first, len(rows["slot"])
        blocks = np.frombuffer(rows["block"], _I64)[first:last]
        open_rows = first + np.flatnonzero(blocks == -1)
        self._block_partials(open_rows, schema_of or self._schema_of)
        stored = codecs.encode(self.codec_id, self.buffer[: self.used], self.level)
        number = self.writer.write_block(stored, self.used, self.codec_id)
        block_col = rows["block"]
        for row in open_rows.tolist():
            block_col[row] = number
        self._open_first = last
        self.used = 0
        self.version += 1

    _schema_of: Callable[[int], Schema]  # set by PendingWrites

    def _block_partials(self, open_rows: np.ndarray, schema_of) -> None:
        rows = self.rows
        nulls = np.frombuffer(rows["nulls"], _I64)
        todo = open_rows[nulls[open_rows] == _UNKNOWN]
        del nulls
        if not len(todo):
            return
        schema_ids = np.frombuffer(rows["schema"], _I64)[todo]
        offsets = np.frombuffer(rows["offset"], _I64)[todo]
        lengths = np.frombuffer(rows["length"], _I64)[todo]
        # one kernel call per (storage dtype, null rule): schemas sharing them go together
        groups: dict[tuple, list[int]] = {}
        schemas = {sid: schema_of(sid) for sid in dict.fromkeys(schema_ids.tolist())}
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
            kind = schemas[sids[0]].dtype
            valid = counts[:, 1]
            lo = np.where(valid > 0, _bits(extremes[:, 0], kind), 0)
            hi = np.where(valid > 0, _bits(extremes[:, 1], kind), 0)
            for name, column in (("nulls", counts[:, 0]), ("valid", valid), ("min", lo),
                                 ("max", hi)):
                target = np.frombuffer(rows[name], _I64)  # writes through to the array('q')
                target[todo[pick]] = column
                del target  # an array('q') that exports its buffer cannot grow

    def find(self, slot: int, chunk: int) -> int:
        return self._keys.find(slot, chunk)

    def chunk_bytes(self, row: int) -> tuple[bytes, bytes]:
        """(values bytes, mask bytes) of one pending row."""
        rows = self.rows
        offset, length, mask = rows["offset"][row], rows["length"][row], rows["mask"][row]
        block = rows["block"][row]
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
        rows = {name: np.frombuffer(col, _I64) if len(col) else np.zeros(0, _I64)
                for name, col in self.rows.items()}
        n = len(rows["slot"])
        blocks = self.writer.blocks.data
        n_blocks = len(blocks["offset"])
        block = np.where(rows["block"] == -1, n_blocks, rows["block"])
        order = np.lexsort((np.arange(n), rows["chunk"], rows["slot"]))
        s, c = rows["slot"][order], rows["chunk"][order]
        keep = np.ones(n, bool)
        keep[:-1] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
        pick = order[keep]

        def col(name):
            return np.frombuffer(blocks[name], _I64) if n_blocks else np.zeros(0, _I64)

        open_size = self.used
        index = ChunkIndex(
            rows["slot"][pick], rows["chunk"][pick], block[pick], rows["offset"][pick],
            rows["length"][pick], rows["mask"][pick], rows["nulls"][pick], rows["valid"][pick],
            rows["min"][pick], rows["max"][pick], rows["nulls"][pick] != _UNKNOWN,
            np.append(col("offset"), 0), np.append(col("stored"), open_size),
            np.append(col("decoded"), open_size), np.append(col("codec"), 0),
            np.append(col("crc"), 0),
            np.append(np.zeros(n_blocks, _I64), 1),
            [_SpillSource(self.writer), _OpenBlock(bytes(self.buffer[:open_size]), self.path)])
        index.pending_rows = pick  # row numbers in this log, for string statistics
        self._index = (self.version, index)
        return index

    def finish(self, schema_of: Callable[[int], Schema]) -> SegmentIndex:
        """Seal the open block, hand the rows to the segment writer and write its index."""
        self.seal(schema_of)
        writer = self.writer
        if writer.chunks.data["slot"] or not len(self):
            return writer.finish()
        rows = {name: np.frombuffer(col, _I64) for name, col in self.rows.items()}
        writer.chunks.extend(**{name: rows[name] for name in
                                ("slot", "chunk", "block", "offset", "length", "mask")})
        schema_ids = rows["schema"]
        multi = np.array([schema_of(s).n_chunks > 1 for s in schema_ids.tolist()], bool) \
            if len(schema_ids) else np.zeros(0, bool)
        keep = np.flatnonzero(multi & (rows["nulls"] != _UNKNOWN))
        writer.partials.extend(row=keep, nulls=rows["nulls"][keep], valid=rows["valid"][keep],
                               min=rows["min"][keep], max=rows["max"][keep])
        return writer.finish()


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
                 schema_of: Callable[[int], Schema], dirty_budget: int = DIRTY_BUDGET):
        self.storage = storage
        self.codec_id = codecs.CODEC_IDS[codec]
        self.level = level
        self.block_size = block_size
        self.schema_of = schema_of
        self.dirty_budget = dirty_budget
        self.segments: dict[str, PendingSegment] = {}
        self._dirty: OrderedDict[tuple[int, int], DirtyChunk] = OrderedDict()
        self._dirty_bytes = 0
        self.finished: list[FinishedSegment] = []
        self._published: set[str] = set()

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

    def put_dirty(self, key: tuple[int, int], chunk: DirtyChunk, generation: int) -> None:
        """Keep a partly written chunk decoded; encode the oldest ones when over budget."""
        self._forget_dirty(key)
        self._dirty[key] = chunk
        self._dirty_bytes += chunk.nbytes
        while self._dirty_bytes > self.dirty_budget and len(self._dirty) > 1:
            self._encode_oldest(generation)

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
                                   self.level, self.block_size)
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

    def string_partial(self, array: str) -> Callable[[int], tuple[str, str] | None]:
        """(min, max) of a string chunk by its row in :meth:`index`, where it was kept."""
        segment = self.segments.get(array)
        if segment is None:
            return lambda row: None
        index = segment.index()
        return lambda row: segment.strings.get(int(index.pending_rows[row]))

    def finish(self, generation: int) -> list[FinishedSegment]:
        """Encode every dirty chunk, close every pending segment; returns all not yet committed."""
        self.prepare(generation)
        for array, segment in list(self.segments.items()):
            index = segment.finish(self.schema_of)
            self.finished.append(FinishedSegment(array, segment.key, segment.path,
                                                 segment.writer.size, index, segment.writer))
            del self.segments[array]
        # a flush that failed part-way (an upload error) publishes the rest when retried
        self.storage.publish_many([(seg.key, seg.path) for seg in self.finished
                                   if seg.key not in self._published], self._published.add)
        return self.finished

    def written_slots(self) -> dict[str, set[int]]:
        """The slots with chunks in the open pending segments or dirty, per array name."""
        out: dict[str, set[int]] = {}
        for array, segment in self.segments.items():
            out.setdefault(array, set()).update(segment.rows["slot"])
        for (slot, _chunk), chunk in self._dirty.items():
            out.setdefault(chunk.array, set()).add(slot)
        return out

    def unsent(self, array: str) -> list[tuple[SegmentIndex, Source]]:
        """(index, source) of the finished segments of ``array`` that no commit references yet
        (a flush failed after finishing them), oldest first."""
        return [(seg.index, _SpillSource(seg.writer)) for seg in self.finished
                if seg.array == array]

    def committed(self) -> None:
        """The root now references every finished segment: start afresh."""
        for seg in self.finished:
            self.storage.release_spill(seg.key, seg.path)
            seg.writer.release()
        self.finished = []
        self._published = set()

    def abandon(self) -> None:
        """Drop everything (the handle is discarded without flushing)."""
        for segment in self.segments.values():
            segment.writer.release()
            self.storage.discard(segment.key, segment.path)
        for seg in self.finished:
            seg.writer.release()
            self.storage.discard(seg.key, seg.path)
        self.segments.clear()
        self.finished = []
        self._published = set()
        self._dirty.clear()
        self._dirty_bytes = 0
