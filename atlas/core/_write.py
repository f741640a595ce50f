"""Writing one window of one array: split it over the chunk grid, encode whole chunks at once,
merge partial ones into their current content (read-modify-write)."""

from __future__ import annotations

import numpy as np

from atlas import kernels
from atlas.core import _chunks
from atlas.core._pending import DirtyChunk, PendingWrites
from atlas.core._reader import ReadContext, read_chunk
from atlas.format.manifest import Schema


def write_window(ctx: ReadContext, pending: PendingWrites, array: str, slot: int,
                 schema: Schema, start: tuple[int, ...], data: np.ndarray,
                 generation: int) -> None:
    """Write ``data`` (already checked, in the storage dtype) at ``start``."""
    if data.size == 0:
        return
    data = np.require(data, requirements="C")
    # compiled: the flush computes stats with kernels, so a writer loads them in any case
    plan = kernels.window_plan(schema.shape, schema.chunk_shape, start, data.shape,
                               compiled=True)
    whole = np.all(plan.boxes == plan.extents, axis=1)
    for k in range(len(plan.chunk_ids)):
        chunk = int(plan.chunk_ids[k])
        extent = tuple(int(e) for e in plan.extents[k])
        key = (slot, chunk)
        if whole[k] and data.shape == extent:
            pending.put(array, schema, slot, chunk, data, None, generation)
            continue
        if whole[k]:
            values = _chunks.new_chunk(schema, extent)
            kernels.copy_box(data, plan.dst_starts[k], values, plan.src_starts[k], extent)
            pending.put(array, schema, slot, chunk, values, None, generation)
            continue
        current = read_chunk(ctx, schema, slot, chunk, extent)
        if current is None:
            values = _chunks.new_chunk(schema, extent)
            written = np.zeros(extent, np.uint8) if _chunks.needs_mask(schema) else None
        else:
            values = np.array(current[0], copy=True, order="C")
            written = None if current[1] is None else np.array(current[1], copy=True)
        kernels.copy_box(data, plan.dst_starts[k], values, plan.src_starts[k], plan.boxes[k])
        if written is not None:
            kernels.fill_box(written, plan.src_starts[k], plan.boxes[k], 1)
        pending.put_dirty(key, DirtyChunk(array, schema, values, written), generation)
