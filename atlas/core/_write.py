"""Writing one window of one array: split it over the chunk grid, hand whole chunks to the
pending segment at once, merge partial ones into their current content (read-modify-write)."""

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
