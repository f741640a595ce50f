"""The read path: plan -> fetch -> decode -> scatter, for one window across many (dataset, array)
incarnations ("rows") of one array name, into a preallocated ``out`` of shape (rows, *window).

- plan: the window's chunks (kernel ``plan_window``) and where each row's chunks sit in the
  resolved chunk index (kernel ``find_chunks``); pending (unflushed) chunks override.
- fetch: byte ranges grouped per segment, sorted and coalesced, fetched with ``get_ranges``.
- decode: checksum + decompress on a small thread pool (codecs release the GIL).
- scatter: kernel ``copy_boxes`` writes each chunk's overlap straight into ``out``; one
  ``fill_boxes`` call fills every box that no chunk covers.

Until a process has read enough chunks to pay for loading numba (``kernels.numpy_path``), reads
plan, search, copy and fill with numpy instead: a fresh process's first reads never wait ~0.5 s
for the kernels.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from atlas import codecs, kernels
from atlas.core import _chunks
from atlas.core._index import ResolvedIndex
from atlas.core._pending import PendingWrites
from atlas.dtypes import fill_scalar
from atlas.errors import CorruptionError
from atlas.format.manifest import Schema
from atlas.storage import Storage

COALESCE_GAP = 1 << 16  # merge byte ranges closer than this into one request
PARALLEL_MIN_BYTES = 1 << 20  # below this much decoded data, decoding inline beats the pool

_pool: ThreadPoolExecutor | None = None
_pool_pid = None


def decode_pool() -> ThreadPoolExecutor:
    """One process-wide pool, recreated after fork."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                   thread_name_prefix="atlas-decode")
        _pool_pid = os.getpid()
    return _pool


@dataclass
class ReadContext:
    """What a read needs from the store handle."""

    storage: Storage
    resolved: ResolvedIndex
    pending: PendingWrites | None


def coalesce(offsets: np.ndarray, lengths: np.ndarray, gap: int = COALESCE_GAP):
    """Group sorted byte ranges whose gaps are below ``gap``: (starts, ends, group of each)."""
    ends = offsets + lengths
    new_group = np.ones(len(offsets), bool)
    if len(offsets) > 1:
        new_group[1:] = offsets[1:] > np.maximum.accumulate(ends)[:-1] + gap
    group = np.cumsum(new_group) - 1
    starts = offsets[new_group]
    group_ends = np.maximum.reduceat(ends, np.flatnonzero(new_group)) if len(offsets) else ends
    return starts, group_ends, group


def distinct_values(values: np.ndarray) -> list[int]:
    """Distinct integers in order of first appearance. (Not ``np.unique``: its first call imports
    ``numpy.ma``, ~20 ms of a fresh process's first read.)"""
    return list(dict.fromkeys(values.tolist()))


def read_rows(ctx: ReadContext, slots: np.ndarray, schema_ids: np.ndarray,
              schemas: list[Schema], start: tuple[int, ...], window: tuple[int, ...],
              out: np.ndarray) -> None:
    """Fill ``out[i]`` with the window of row i = (slots[i], schemas[schema_ids[i]]).

    Every row's schema has the same dtype and admits the window (the caller checked).
    """
    if out.size == 0:
        return
    distinct = distinct_values(schema_ids)
    for schema_id in distinct:
        positions = np.flatnonzero(schema_ids == schema_id) if len(distinct) > 1 \
            else np.arange(len(slots))
        _read_group(ctx, schemas[schema_id], slots[positions], positions, start, window, out)


def _read_group(ctx, schema, slots, positions, start, window, out):
    plan = kernels.window_plan(schema.shape, schema.chunk_shape, start, window)
    m, n = len(plan.chunk_ids), len(slots)
    want_slots = np.repeat(slots, m)
    want_chunks = np.tile(plan.chunk_ids, n)
    row_of = np.repeat(positions, m)
    k_of = np.tile(np.arange(m), n)
    found = np.full(n * m, -1, np.int64)
    if ctx.resolved.rows:
        found = kernels.find(ctx.resolved.columns["slot"], ctx.resolved.columns["chunk"],
                             want_slots, want_chunks)
    if ctx.pending is not None and ctx.pending.slots:
        _overlay_pending(ctx.pending, schema, plan, want_slots, want_chunks, row_of, k_of,
                         found, out)
    missing = np.flatnonzero(found == -1)
    if len(missing):
        _fill(schema, plan, row_of[missing], k_of[missing], window, out)
    present = np.flatnonzero(found >= 0)
    if len(present):
        _fetch_decode_scatter(ctx, schema, plan, found[present], row_of[present],
                              k_of[present], window, out)


def _overlay_pending(pending, schema, plan, want_slots, want_chunks, row_of, k_of, found, out):
    """Copy pending chunks into ``out`` and mark them handled (found = -2)."""
    candidates = np.isin(want_slots, np.fromiter(pending.slots, np.int64, len(pending.slots)))
    for i in np.flatnonzero(candidates):
        slot = int(want_slots[i])
        k = int(k_of[i])
        extent = tuple(int(e) for e in plan.extents[k])
        hit = pending.lookup(slot, int(want_chunks[i]), schema, extent)
        if hit is None:
            continue
        values = np.require(hit[0], requirements="C").view(out.dtype) if not schema.dtype.is_string \
            else hit[0]
        kernels.copy_box(values, plan.src_starts[k], out[int(row_of[i]), ...], plan.dst_starts[k],
                         plan.boxes[k])
        found[i] = -2


def _fill(schema, plan, rows, ks, window, out):
    fill = fill_scalar(schema.dtype, schema.fill)
    if schema.dtype.is_string or kernels.numpy_path(len(rows)):
        for index in box_slices(plan.dst_starts[ks], plan.boxes[ks], rows):
            out[index] = fill
        return
    itemsize = out.dtype.itemsize
    ndim = len(window)
    dst_shapes = np.broadcast_to(np.array(window, np.int64), (len(rows), ndim))
    shapes_b, starts_b = kernels.fold(np.ascontiguousarray(dst_shapes),
                                       plan.dst_starts[ks], itemsize)
    boxes_b, _ = kernels.fold(plan.boxes[ks], plan.boxes[ks], itemsize)
    pattern = np.asarray(fill, dtype=schema.dtype.storage).reshape(1).view(np.uint8)
    row_bytes = math.prod(window) * itemsize
    kernels.fill_boxes(out.reshape(-1).view(np.uint8), rows.astype(np.int64) * row_bytes,
                       shapes_b, starts_b, boxes_b, pattern)


def _fetch_decode_scatter(ctx, schema, plan, entries, rows, ks, window, out):
    cols = ctx.resolved.columns
    segment = ctx.resolved.segment[entries]
    offsets = cols["offset"][entries]
    lengths = cols["stored_length"][entries] + cols["mask_length"][entries]
    buffers: list = [None] * len(entries)
    for seg in distinct_values(segment):
        pick = np.flatnonzero(segment == seg)
        pick = pick[np.argsort(offsets[pick], kind="stable")]
        key = ctx.resolved.keys[seg]
        size = ctx.resolved.sizes[seg]
        starts, ends, group = coalesce(offsets[pick], lengths[pick])
        blobs = ctx.storage.get_ranges(key, starts.tolist(), (ends - starts).tolist(), size)
        for j, i in enumerate(pick):
            blob = memoryview(blobs[group[j]])
            rel = int(offsets[i] - starts[group[j]])
            buffers[i] = blob[rel : rel + int(lengths[i])]

    def where_of(i):
        return f"{ctx.storage.location}/{ctx.resolved.keys[segment[i]]}"

    if schema.dtype.is_string:
        for i in range(len(entries)):
            values = _decode_entry(cols, entries[i], buffers[i], schema, plan.extents[ks[i]],
                                   where_of(i))
            k = ks[i]
            kernels.copy_box(values, plan.src_starts[k], out[int(rows[i]), ...], plan.dst_starts[k],
                             plan.boxes[k])
        return

    itemsize = out.dtype.itemsize
    ndim = len(window)
    n = len(entries)
    extents, boxes_e = plan.extents[ks], plan.boxes[ks]
    src_shapes, src_starts = kernels.fold(extents, plan.src_starts[ks], itemsize)
    dst_shapes = np.ascontiguousarray(np.broadcast_to(np.array(window, np.int64), (n, ndim)))
    dst_shapes, dst_starts = kernels.fold(dst_shapes, plan.dst_starts[ks], itemsize)
    boxes, _ = kernels.fold(boxes_e, boxes_e, itemsize)
    dst_offsets = rows.astype(np.int64) * (math.prod(window) * itemsize)
    expected = (np.prod(extents, axis=1) * itemsize).tolist() if ndim else [itemsize] * n
    # Where the overlap is one contiguous byte run on both sides (whole chunks, or chunks split
    # only along the first axis), a plain memcpy replaces the kernel call.
    if ndim == 0:
        run = np.full(n, itemsize, np.int64)
        run_src = np.zeros(n, np.int64)
        run_dst = dst_offsets
    else:
        row_bytes = math.prod(window[1:]) * itemsize
        full_rows = np.all((boxes_e[:, 1:] == extents[:, 1:]) &
                           (extents[:, 1:] == np.array(window[1:], np.int64)), axis=1)
        run = np.where(full_rows, boxes_e[:, 0] * row_bytes, -1)
        run_src = plan.src_starts[ks][:, 0] * row_bytes
        run_dst = dst_offsets + plan.dst_starts[ks][:, 0] * row_bytes
    run, run_src, run_dst = run.tolist(), run_src.tolist(), run_dst.tolist()
    stored_len, mask_len, crc, codec, decoded_len = (
        cols[c][entries].tolist() for c in
        ("stored_length", "mask_length", "checksum", "codec", "decoded_length"))
    out_bytes = out.reshape(-1).view(np.uint8)
    out_view = memoryview(out_bytes)
    zero = np.zeros(1, np.int64)
    small = kernels.numpy_path(n)
    copy_boxes = None if small else kernels.copy_boxes
    if small:  # numpy indexes of each partial chunk's box (the plan keeps them in bounds)
        partial = [i for i in range(n) if run[i] < 0]
        chunk_shapes = {i: tuple(extents[i].tolist()) for i in partial}
        src_index = dict(zip(partial, box_slices(plan.src_starts[ks[partial]], boxes_e[partial])))
        dst_index = dict(zip(partial, box_slices(plan.dst_starts[ks[partial]], boxes_e[partial],
                                                 rows[partial])))

    def work(batch):
        for i in batch:
            raw = _checked_decode(buffers[i], stored_len[i], mask_len[i], crc[i], codec[i],
                                  decoded_len[i], where_of, i, expected_len=expected[i])
            if len(raw) != expected[i]:
                raise CorruptionError(f"{where_of(i)}: chunk holds {len(raw)} bytes, "
                                      f"expected {expected[i]}")
            if run[i] >= 0:
                out_view[run_dst[i] : run_dst[i] + run[i]] = \
                    memoryview(raw)[run_src[i] : run_src[i] + run[i]]
                continue
            if small:
                chunk = np.frombuffer(raw, out.dtype).reshape(chunk_shapes[i])
                out[dst_index[i]] = chunk[src_index[i]]
                continue
            copy_boxes(np.frombuffer(raw, np.uint8), zero, src_shapes[i : i + 1],
                       src_starts[i : i + 1], out_bytes, dst_offsets[i : i + 1],
                       dst_shapes[i : i + 1], dst_starts[i : i + 1], boxes[i : i + 1])

    total = sum(decoded_len)
    order = range(n)
    if total < PARALLEL_MIN_BYTES or n < 2:
        work(order)
        return
    pool = decode_pool()
    n_batches = min(n, 4 * pool._max_workers)
    futures = [pool.submit(work, batch) for batch in np.array_split(np.arange(n), n_batches)]
    for f in futures:
        f.result()


def box_slices(starts: np.ndarray, boxes: np.ndarray, leading: np.ndarray | None = None
               ) -> list[tuple]:
    """Per row, the numpy index of a box: its slices, after ``leading[row]`` when given."""
    rows = [()] * len(starts) if leading is None else [(r,) for r in leading.tolist()]
    return [lead + tuple(slice(a, a + b) for a, b in zip(s, w))
            for lead, s, w in zip(rows, starts.tolist(), boxes.tolist())]


def _checked_decode(buffer, stored_len: int, mask_len: int, crc: int, codec_id: int,
                    decoded_len: int, where, *where_args, expected_len: int | None = None):
    """Check a chunk record's length and checksum, then decode its data part (bounded by
    ``expected_len``, the chunk's size by its schema: a forged length never allocates).

    ``where(*where_args)`` names the record in errors; it is only called on failure.
    """
    if len(buffer) != stored_len + mask_len:
        raise CorruptionError(f"{where(*where_args)}: chunk record is truncated")
    if codecs.checksum(buffer) != crc:
        raise CorruptionError(f"{where(*where_args)}: chunk fails its checksum")
    try:
        return codecs.decode(codec_id, buffer[:stored_len], decoded_len, expected_len)
    except CorruptionError as err:
        raise CorruptionError(f"{where(*where_args)}: {err}") from err


def _verified_raw(cols, entry, buffer, where, expected_len=None):
    """:func:`_checked_decode` of row ``entry`` of the index columns."""
    return _checked_decode(buffer, *(int(cols[c][entry]) for c in
                                     ("stored_length", "mask_length", "checksum", "codec",
                                      "decoded_length")), where, expected_len=expected_len)


def _decode_entry(cols, entry, buffer, schema, extent, where: str):
    raw = _verified_raw(cols, entry, buffer, lambda: where,
                        _chunks.raw_length(schema, tuple(int(e) for e in extent)))
    return _chunks.decode_values(schema, raw, tuple(int(e) for e in extent), where)


def read_chunk(ctx: ReadContext, schema: Schema, slot: int, chunk: int,
               extent: tuple[int, ...]):
    """(values, written mask or None) of one stored chunk, or None when it was never stored."""
    if ctx.pending is not None and ctx.pending.has_slot(slot):
        hit = ctx.pending.lookup(slot, chunk, schema, extent)
        if hit is not None:
            return hit
    if not ctx.resolved.rows:
        return None
    cols = ctx.resolved.columns
    pos = int(kernels.find(cols["slot"], cols["chunk"], np.array([slot]), np.array([chunk]))[0])
    if pos < 0:
        return None
    seg = int(ctx.resolved.segment[pos])
    key = ctx.resolved.keys[seg]
    where = f"{ctx.storage.location}/{key}"
    stored_len = int(cols["stored_length"][pos])
    mask_len = int(cols["mask_length"][pos])
    buffer = ctx.storage.get_range(key, int(cols["offset"][pos]), stored_len + mask_len,
                                   ctx.resolved.sizes[seg])
    values = _decode_entry(cols, pos, buffer, schema, extent, where)
    written = _chunks.unpack_mask(buffer[stored_len:], extent) if mask_len else None
    return values, written
