"""``atlas upgrade``: rewrite a format-version-1 store in format version 2, crash-safely.

The catalog becomes one part; each array name's live chunks one segment, small chunks packed
into blocks. Both are written before anything changes; the version-2 root then replaces the
version-1 manifest with the same conditional commit as any flush (a version-1 writer that
committed meanwhile makes it fail with ConflictError), and the version-1 segments are retired
(kept for readers still on version 1 during the grace period). A crash before the commit
leaves the version-1 store as it was, with orphans that ``verify(repair=True)`` removes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from atlas.core import _maintain, _versions
from atlas.core._atlas import load_root
from atlas.core._read import BlockCache
from atlas.errors import ReadOnlyError
from atlas.format.root import Root
from atlas.storage import open_storage


def upgrade(location: Any, **store_options: Any) -> dict:
    """Upgrade the store at ``location``; returns what was done (nothing when already in
    format version 2 or later)."""
    storage = open_storage(location, **store_options)
    if storage.read_only:
        raise ReadOnlyError(f"cannot upgrade the store at {storage.location}: it is read-only")
    root, token, legacy = load_root(storage)
    if legacy is None:
        return {"upgraded": False, "format": root.format_version, "generation": root.generation}
    tables = legacy.tables()
    schemas = legacy.schemas
    live_slots: dict[str, np.ndarray] = {}
    multi_slots: dict[str, np.ndarray] = {}
    for section_id, table in tables.items():
        if section_id[0] != "array":
            continue
        live_slots[section_id[1]] = table.columns["slot"]
        multi = np.array([schemas[s].n_chunks > 1 for s in table.columns["schema"].tolist()],
                         bool) if len(table) else np.zeros(0, bool)
        multi_slots[section_id[1]] = table.columns["slot"][multi]
    new_root = Root(generation=root.generation + 1, codec=root.codec, level=root.level,
                    block_size=root.block_size, next_did=root.next_did,
                    next_slot=root.next_slot, next_schema=root.next_schema,
                    next_seq=root.next_seq, message="upgraded from format version 1")
    written = []
    cache = BlockCache()
    try:
        part = _maintain.write_part(storage, new_root, tables.items())
        written.append(part)
        new_root.parts = [part.ref]
        for array in legacy.segments:
            index = legacy.index(array, None)
            rows = np.flatnonzero(np.isin(index.slot, live_slots.get(array, [])))
            if not len(rows):
                continue
            # version 1 kept every chunk's partial; version 2 only those of many-chunk arrays
            nulls, valid, lo, hi, _has = index.partials()
            keep = np.isin(index.slot, multi_slots[array])
            index = dataclasses.replace(index, partials=lambda p=(nulls, valid, lo, hi, keep): p)
            segment, _seg_index = _maintain.rewrite_segment(storage, new_root, index, rows,
                                                            cache)
            written.append(segment)
            new_root.segments[array] = [segment.ref]
        now = time.time()
        # version 1 keeps no versions: its files are read by none once the upgrade commits
        new_root.retired = [(key, since, new_root.generation) for key, since in legacy.retired]
        new_root.retired += [(key, now, new_root.generation) for key in legacy.keys()
                             if key not in dict(legacy.retired)]
        _versions.commit_root(storage, new_root, token)
    finally:
        for w in written:
            w.release()
    return {"upgraded": True, "format": 2, "generation": new_root.generation,
            "datasets": len(tables.get(("datasets",), ())), "segments": len(new_root.segments),
            "retired": len(new_root.retired)}
