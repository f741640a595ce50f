"""Writes between flushes: chunks encoded into one pending segment per array name.

A chunk written whole is encoded and appended at once, so memory stays bounded by about one chunk
per array being written. A chunk written in parts is kept decoded in a small write-back cache
("dirty" chunks, bounded by ``dirty_budget`` bytes) so that piecewise writes do not re-encode it
each time; the oldest dirty chunk is encoded when the budget is exceeded, and all at flush.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

from atlas import codecs
from atlas.core import _chunks
from atlas.errors import CorruptionError
from atlas.format.manifest import Schema
from atlas.format.segment import SegmentIndex, SegmentWriter
from atlas.storage import Storage

DIRTY_BUDGET = 64 << 20


def segment_key(array: str, generation: int) -> str:
    """A new, never reused key for a segment of ``array``."""
    return f"segments/{quote(array, safe='')}/{generation:08d}-{uuid.uuid4().hex}.seg"


@dataclass
class DirtyChunk:
    array: str
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
    writer: SegmentWriter  # holds the file's lock until the commit (see SegmentWriter)


class PendingWrites:
    """Everything written since the last successful flush of one store handle."""

    def __init__(self, storage: Storage, codec: str, level: int, dirty_budget: int = DIRTY_BUDGET):
        self.storage = storage
        self.codec_id = codecs.CODEC_IDS[codec]
        self.level = level
        self.dirty_budget = dirty_budget
        self._writers: dict[str, tuple[str, SegmentWriter]] = {}
        self._entries: dict[tuple[int, int], tuple[SegmentWriter, tuple]] = {}
        self._dirty: OrderedDict[tuple[int, int], DirtyChunk] = OrderedDict()
        self._dirty_bytes = 0
        self.finished: list[FinishedSegment] = []
        self._published: set[str] = set()
        self.slots: set[int] = set()  # slots with chunks written since the last flush

    def __bool__(self) -> bool:
        return bool(self._writers or self._dirty or self.finished)

    # -- writing -------------------------------------------------------------------------------

    def put(self, array: str, schema: Schema, slot: int, chunk: int, values: np.ndarray,
            written: np.ndarray | None, generation: int) -> None:
        """Encode a chunk and append it to the pending segment of ``array``."""
        if written is not None and written.all():
            written = None
        raw = _chunks.encode_values(schema, values)
        partial = _chunks.partial_stats(schema, values, written)
        stored = codecs.encode(self.codec_id, raw, self.level)
        writer = self._writer(array, generation)
        row = writer.append(slot, chunk, stored, len(raw), _chunks.pack_mask(written),
                            self.codec_id, partial)
        self._entries[(slot, chunk)] = (writer, row)
        self._forget_dirty((slot, chunk))
        self.slots.add(slot)

    def put_dirty(self, key: tuple[int, int], chunk: DirtyChunk, generation: int) -> None:
        """Keep a partly written chunk decoded; encode the oldest ones when over budget."""
        self._forget_dirty(key)
        self._dirty[key] = chunk
        self._dirty_bytes += chunk.nbytes
        self.slots.add(key[0])
        while self._dirty_bytes > self.dirty_budget and len(self._dirty) > 1:
            self._encode_oldest(generation)

    def _encode_oldest(self, generation: int) -> None:
        key, chunk = next(iter(self._dirty.items()))
        self.put(chunk.array, chunk.schema, key[0], key[1], chunk.values, chunk.written,
                 generation)

    def _forget_dirty(self, key: tuple[int, int]) -> None:
        old = self._dirty.pop(key, None)
        if old is not None:
            self._dirty_bytes -= old.nbytes

    def _writer(self, array: str, generation: int) -> SegmentWriter:
        found = self._writers.get(array)
        if found is None:
            key = segment_key(array, generation)
            found = self._writers[array] = (key, SegmentWriter(self.storage.spill_path(key)))
        return found[1]

    # -- reading back --------------------------------------------------------------------------

    def has_slot(self, slot: int) -> bool:
        return slot in self.slots

    def lookup(self, slot: int, chunk: int, schema: Schema, extent: tuple[int, ...]):
        """(values, written) of a pending chunk, or None when this chunk is not pending."""
        dirty = self._dirty.get((slot, chunk))
        if dirty is not None:
            return dirty.values, dirty.written
        found = self._entries.get((slot, chunk))
        if found is None:
            return None
        writer, row = found
        _slot, _chunk, offset, stored_len, decoded_len, mask_len, codec_id = row[:7]
        data = writer.read_record(offset, stored_len + mask_len)
        where = f"pending segment {writer.path}"
        try:
            raw = codecs.decode(codec_id, data[:stored_len], decoded_len)
        except CorruptionError as err:
            raise CorruptionError(f"{where}: {err}") from err
        values = _chunks.decode_values(schema, raw, extent, where)
        written = _chunks.unpack_mask(data[stored_len:], extent) if mask_len else None
        return values, written

    # -- flushing ------------------------------------------------------------------------------

    def drop_slots(self, slots: set[int]) -> None:
        """Forget dirty chunks of deleted arrays (their encoded bytes become dead space)."""
        for key in [k for k in self._dirty if k[0] in slots]:
            self._forget_dirty(key)
        for key in [k for k in self._entries if k[0] in slots]:
            del self._entries[key]
        self.slots -= slots

    def finish(self, generation: int) -> list[FinishedSegment]:
        """Encode every dirty chunk, close every pending segment; returns all not yet committed."""
        while self._dirty:
            self._encode_oldest(generation)
        for array, (key, writer) in list(self._writers.items()):
            index = writer.finish()
            self.finished.append(FinishedSegment(array, key, writer.path, writer.size, index,
                                                 writer))
            del self._writers[array]
        # a flush that failed part-way (an upload error) publishes the rest when retried
        self.storage.publish_many([(seg.key, seg.path) for seg in self.finished
                                   if seg.key not in self._published], self._published.add)
        return self.finished

    def committed(self) -> None:
        """The manifest now references every finished segment: start afresh."""
        for seg in self.finished:
            self.storage.release_spill(seg.key, seg.path)
            seg.writer.release()
        self.finished = []
        self._published = set()
        self._entries.clear()
        self.slots = set()

    def abandon(self) -> None:
        """Drop everything (the handle is discarded without flushing)."""
        for key, writer in self._writers.values():
            writer.abandon()
            self.storage.discard(key, writer.path)
        for seg in self.finished:
            seg.writer.abandon()
            self.storage.discard(seg.key, seg.path)
        self._writers.clear()
        self.finished = []
        self._published = set()
        self._entries.clear()
        self._dirty.clear()
        self._dirty_bytes = 0
        self.slots = set()
