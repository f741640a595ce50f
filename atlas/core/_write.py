"""Writing one window of one array: split it over the chunk grid, hand whole chunks to the
pending segment at once, merge partial ones into their current content (read-modify-write).
Resizing an array moves its stored chunks onto the chunk grid of the new shape."""

from __future__ import annotations

from typing import Callable

import numpy as np

from atlas import kernels
from atlas.core import _chunks
from atlas.core._pending import DirtyChunk, PendingWrites
from atlas.core._read import chunk_plan
from atlas.format.schema import Schema

# (slot, chunk, extent) -> (values, written) of the chunk as it is now, or None
CurrentChunk = Callable[[int, int, tuple[int, ...]], tuple | None]
_I64 = np.int64


def write_window(pending: PendingWrites, current: CurrentChunk, array: str, slot: int,
                 schema_id: int, schema: Schema, start: tuple[int, ...], data: np.ndarray,
                 generation: int) -> None:
    """Write ``data`` (already checked, in the storage dtype) at ``start``."""
    if data.size == 0:
        return
    data = np.require(data, requirements="C")
    if schema.n_chunks == 1 and data.shape == schema.shape:
        # the commonest case by far (a profile, a scalar): one whole chunk, nothing to plan
        pending.put(array, schema_id, schema, slot, 0, data, None, generation)
        return
    plan = chunk_plan(schema, start, data.shape)
    whole = np.all(plan.boxes == plan.extents, axis=1)
    for k in range(len(plan.chunk_ids)):
        chunk = int(plan.chunk_ids[k])
        extent = tuple(int(e) for e in plan.extents[k])
        if whole[k] and data.shape == extent:
            pending.put(array, schema_id, schema, slot, chunk, data, None, generation)
            continue
        if whole[k]:
            values = _chunks.new_chunk(schema, extent)
            kernels.copy_window(data, plan.dst_starts[k], values, plan.src_starts[k], extent)
            pending.put(array, schema_id, schema, slot, chunk, values, None, generation)
            continue
        found = current(slot, chunk, extent)
        if found is None:
            values = _chunks.new_chunk(schema, extent)
            written = np.zeros(extent, np.uint8) if _chunks.needs_mask(schema) else None
        else:
            values = np.array(found[0], copy=True, order="C")
            written = None if found[1] is None else np.array(found[1], copy=True)
        kernels.copy_window(data, plan.dst_starts[k], values, plan.src_starts[k],
                            plan.boxes[k])
        if written is not None:
            box = tuple(slice(a, a + b) for a, b in zip(plan.src_starts[k].tolist(),
                                                        plan.boxes[k].tolist()))
            written[box] = 1
        pending.put_dirty((slot, chunk), DirtyChunk(array, schema_id, schema, values, written),
                          generation)


def resize_chunks(pending: PendingWrites, current: CurrentChunk,
                  stored: Callable[[], np.ndarray], array: str, slot: int, schema_id: int,
                  old: Schema, new: Schema, generation: int) -> None:
    """Move the stored chunks of incarnation ``slot`` from the grid of ``old`` to the grid of
    ``new`` (same chunk shape, another shape); ``stored()`` gives the chunk numbers the slot
    has stored now, and no chunk of it may be dirty.

    A chunk is numbered by its place in the grid and clipped at the array edge, so a chunk
    whose number or clipped extent changes is written again, cut or padded (padded cells read
    as the fill and count as never written). A stored number that no chunk takes in the new
    grid is overwritten with an empty chunk, so nothing a shrink dropped shows through a later
    grow. Numbers beyond the new grid are left unread (compaction drops them).
    """
    # shrinking axes first and growing them after makes every chunk number move one way, so
    # each chunk is read before anything is written over it, one chunk at a time
    mid = old._replace(shape=tuple(map(min, old.shape, new.shape)))
    for a, b in ((old, mid), (mid, new)):
        if a.shape != b.shape:
            _regrid(pending, current, stored(), array, slot, schema_id, a, b, generation)


def _regrid(pending: PendingWrites, current: CurrentChunk, ids: np.ndarray, array: str,
            slot: int, schema_id: int, a: Schema, b: Schema, generation: int) -> None:
    """One step of :func:`resize_chunks`: every axis of ``b`` shrinks, or every axis grows."""
    chunk = np.array(a.chunk_shape, _I64)
    live = ids[ids < a.n_chunks]  # higher numbers were left behind by earlier shrinks
    coords = np.stack(np.unravel_index(live, a.grid), axis=1).astype(_I64)
    origins = coords * chunk
    inside = np.all(origins < np.array(b.shape, _I64), axis=1)
    live, coords, origins = live[inside], coords[inside], origins[inside]
    targets = np.ravel_multi_index(tuple(coords.T), b.grid).astype(_I64) if len(live) else live
    old_ext = np.minimum(chunk, np.array(a.shape, _I64) - origins)
    new_ext = np.minimum(chunk, np.array(b.shape, _I64) - origins)
    moved = np.flatnonzero((targets != live) | np.any(old_ext != new_ext, axis=1))
    # shrinking, numbers only fall (read in ascending order); growing, they only rise
    if any(x > y for x, y in zip(b.shape, a.shape)):
        moved = moved[::-1]
    for k in moved.tolist():
        old_e = tuple(old_ext[k].tolist())
        new_e = tuple(new_ext[k].tolist())
        values, written = _regridded(b, current(slot, int(live[k]), old_e), old_e, new_e)
        pending.put(array, schema_id, b, slot, int(targets[k]), values, written, generation)
    for number in np.setdiff1d(ids[ids < b.n_chunks], targets).tolist():
        origin = np.array(np.unravel_index(number, b.grid), _I64) * chunk
        extent = tuple(np.minimum(chunk, np.array(b.shape, _I64) - origin).tolist())
        values, written = _regridded(b, None, extent, extent)
        pending.put(array, schema_id, b, slot, number, values, written, generation)


def _regridded(schema: Schema, found: tuple | None, old_extent: tuple[int, ...],
               new_extent: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, written mask) of a chunk of ``new_extent`` holding what overlaps of ``found``
    (a chunk of ``old_extent``, or None: nothing) and the fill elsewhere."""
    values = _chunks.new_chunk(schema, new_extent)
    written = np.zeros(new_extent, np.uint8) if _chunks.needs_mask(schema) else None
    if found is not None:
        box = tuple(slice(0, min(o, n)) for o, n in zip(old_extent, new_extent))
        values[box] = found[0][box]
        if written is not None:
            written[box] = 1 if found[1] is None else found[1][box]
    return values, written
