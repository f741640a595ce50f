"""The committed chunk index of one array name: every segment's footer merged, newest wins.

Segments are immutable, so a parsed footer is cached by key for the life of the handle; the
merged ("resolved") index is rebuilt only when the list of segments changes.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from atlas.format.segment import COLUMNS, TRAILER, SegmentIndex, parse_index
from atlas.storage import Storage

FOOTER_PROBE = 64 << 10  # bytes read from a segment's end to get its index in one request


@dataclass
class ResolvedIndex:
    """Columns sorted by (slot, chunk), one row per chunk (the newest), plus the segment of each
    row as a position in ``keys``/``sizes``."""

    columns: dict[str, np.ndarray]
    segment: np.ndarray
    keys: list[str]
    sizes: list[int]

    @property
    def rows(self) -> int:
        return len(self.segment)

    def rows_of_slot(self, slot: int) -> slice:
        slots = self.columns["slot"]
        return slice(int(np.searchsorted(slots, slot, "left")),
                     int(np.searchsorted(slots, slot, "right")))


class IndexCache:
    """Footers by segment key and resolved indexes by array name, for one storage."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._footers: dict[str, SegmentIndex] = {}
        self._resolved: dict[str, tuple[tuple[str, ...], ResolvedIndex]] = {}
        self._lock = threading.Lock()

    def footer(self, key: str, size: int, rows: int | None = None) -> SegmentIndex:
        found = self._footers.get(key)
        if found is None:
            found = self._fetch_footer(key, size, rows)
            self._footers[key] = found
        return found

    def _fetch_footer(self, key: str, size: int, rows: int | None = None) -> SegmentIndex:
        """One ranged read of the segment's tail: trailer and index together, sized from the
        row count the manifest records (or FOOTER_PROBE bytes, then a second read if the index
        is bigger). One request per segment on object stores."""
        where = f"{self.storage.location}/{key}"
        probe = FOOTER_PROBE if rows is None else \
            max(FOOTER_PROBE, int(rows) * 8 * len(COLUMNS) + TRAILER.size)
        tail_start = max(0, size - probe)
        tail = memoryview(self.storage.get_range(key, tail_start, size - tail_start, size))
        trailer = bytes(tail[max(0, len(tail) - TRAILER.size) :])

        def read(offset: int, length: int):
            if offset >= tail_start:
                return tail[offset - tail_start : offset - tail_start + length]
            return self.storage.get_range(key, offset, length, size)

        return parse_index(trailer, read, where)

    def add_footer(self, key: str, index: SegmentIndex) -> None:
        """Seed the cache with the index of a segment this handle just wrote."""
        self._footers[key] = index

    def resolved(self, array: str, segments: list) -> ResolvedIndex:
        """The merged index of ``segments`` ([[key, size, rows], ...], oldest first)."""
        keys = tuple(s[0] for s in segments)
        cached = self._resolved.get(array)
        if cached is not None and cached[0] == keys:
            return cached[1]
        with self._lock:
            missing = [s for s in segments if s[0] not in self._footers]
            if len(missing) > 1:  # fetched concurrently: one round trip, not one per segment
                with ThreadPoolExecutor(min(16, len(missing))) as pool:
                    for seg, index in zip(missing, pool.map(lambda s: self._fetch_footer(*s),
                                                            missing)):
                        self._footers[seg[0]] = index
            footers = [self.footer(key, size, rows) for key, size, rows in segments]
            resolved = _merge(footers, list(keys), [s[1] for s in segments])
            self._resolved[array] = (keys, resolved)
        return resolved

    def forget(self, keys) -> None:
        for key in keys:
            self._footers.pop(key, None)


def _merge(footers: list[SegmentIndex], keys: list[str], sizes: list[int]) -> ResolvedIndex:
    if not footers:
        empty = SegmentIndex.empty()
        return ResolvedIndex(empty.columns, np.zeros(0, np.int64), keys, sizes)
    columns = {name: np.concatenate([f.columns[name] for f in footers]) for name in COLUMNS}
    segment = np.concatenate([np.full(f.rows, i, np.int64) for i, f in enumerate(footers)])
    # within one segment a later row for the same chunk replaces an earlier one too
    order_in_file = np.concatenate([np.arange(f.rows, dtype=np.int64) for f in footers])
    order = np.lexsort((-order_in_file, -segment, columns["chunk"], columns["slot"]))
    slots = columns["slot"][order]
    chunks = columns["chunk"][order]
    keep = np.ones(len(order), bool)
    keep[1:] = (slots[1:] != slots[:-1]) | (chunks[1:] != chunks[:-1])
    chosen = order[keep]
    return ResolvedIndex({n: c[chosen] for n, c in columns.items()}, segment[chosen], keys, sizes)
