"""The read path: plan -> fetch -> decode -> scatter, for one window of one array name across
many (dataset, array) incarnations ("rows") into a preallocated ``out`` of shape (rows, *window).

- plan (:func:`plan_read`, pure): the window's chunks, where each row's chunks lie in the chunk
  indexes (pending first, then committed), the blocks that hold them and, per chunk, its bytes
  in the decoded block, its place in ``out`` and its box; boxes no chunk covers are filled.
- fetch: the blocks' byte ranges per source, coalesced, in one ``get_ranges`` call each.
- decode: each block once (crc32c, then the codec, bounded by the size the index declares), on
  a thread pool sized to the blocks; decoded blocks are kept in a small cache per handle, so
  reading datasets one by one decodes a shared block once.
- scatter: per block one kernel call copying all its chunks' overlaps into ``out`` (contiguous
  runs as byte runs, other overlaps as boxes); one call fills every uncovered box. A block
  whose chunks are one stretch of ``out`` (a stacked read of one-chunk arrays) is decoded
  straight into it instead, and needs no kernel.

A read of every row of one index in its order (a stacked read of everything) is planned from
the index's own columns, without a search or copies: each fresh array of a row per dataset
costs page faults on these machines.

Numeric data never takes a Python loop per chunk; strings (object arrays) are decoded and
copied chunk by chunk, as they must be.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from atlas import codecs, kernels
from atlas._memory import THREAD_BUFFER_MAX, thread_buffer
from atlas._pools import run_shared, worker_pool
from atlas.core import _chunks
from atlas.core._index import ChunkIndex
from atlas.dtypes import fill_scalar
from atlas.errors import CorruptionError
from atlas.format.schema import Schema

COALESCE_GAP = 1 << 16  # merge byte ranges closer than this into one request
PARALLEL_MIN_BYTES = 1 << 20  # below this much decoded data, decoding inline beats the pool
GROUP_BYTES = THREAD_BUFFER_MAX  # blocks decoded side by side before one copy of their chunks
BLOCK_CACHE_BYTES = 64 << 20
SMALL_TABLE_ROWS = 64  # plan columns this short are arrays, longer ones broadcasts
_I64 = np.int64

class BlockCache:
    """Decoded blocks of immutable sources, least recently used dropped beyond a byte budget."""

    def __init__(self, budget: int = BLOCK_CACHE_BYTES):
        self.budget = budget
        self._blocks: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple):
        with self._lock:
            found = self._blocks.get(key)
            if found is not None:
                self._blocks.move_to_end(key)
            return found

    def put(self, key: tuple, data) -> None:
        size = len(data)
        if size > self.budget // 8:
            return  # a big block would push everything else out
        with self._lock:
            if key in self._blocks:
                return
            self._blocks[key] = data
            self._bytes += size
            while self._bytes > self.budget:
                _key, old = self._blocks.popitem(last=False)
                self._bytes -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0


# -- plan ----------------------------------------------------------------------------------------

@dataclass
class ChunkPlan:
    """The chunks a window overlaps; row k of each table describes chunk k."""

    chunk_ids: np.ndarray  # (m,) linear chunk number in the array's chunk grid, C order
    extents: np.ndarray  # (m, ndim) chunk shape, clipped at the array edge
    src_starts: np.ndarray  # (m, ndim) overlap start inside the chunk
    dst_starts: np.ndarray  # (m, ndim) overlap start inside the window
    boxes: np.ndarray  # (m, ndim) overlap shape


def chunk_plan(schema: Schema, start: tuple[int, ...], window: tuple[int, ...]) -> ChunkPlan:
    """The chunks an in-bounds window touches (the caller checked the bounds), in C order."""
    return chunk_plan_rows(schema, np.array(start, _I64).reshape(1, schema.ndim), window)[1]


def chunk_plan_rows(schema: Schema, starts: np.ndarray, window: tuple[int, ...]
                    ) -> tuple[np.ndarray, ChunkPlan]:
    """:func:`chunk_plan` of one in-bounds window per row (``starts``: (rows, ndim)), all at
    once: (the row of each entry, the entries), rows in order and each row's chunks in C
    order. Every row is offered the chunk counts of the widest straddle, and what lies beyond
    its own last chunk is dropped."""
    ndim, n = schema.ndim, len(starts)
    if any(w == 0 for w in window):
        empty = np.zeros((0, ndim), _I64)
        return np.zeros(0, _I64), ChunkPlan(np.zeros(0, _I64), empty, empty, empty, empty)
    if ndim == 0:  # one chunk, chunk 0, per row
        none = np.zeros((n, 0), _I64)
        return np.arange(n, dtype=_I64), ChunkPlan(np.zeros(n, _I64), none, none, none, none)
    shape = np.array(schema.shape, _I64)
    chunks = np.array(schema.chunk_shape, _I64)
    size = np.array(window, _I64)
    first = starts // chunks
    counts = (starts + size - 1) // chunks - first + 1
    widest = counts.max(axis=0)
    steps = np.indices(tuple(widest.tolist()), _I64).reshape(ndim, -1).T  # (k, ndim), C order
    if n == 1:  # one window (every read but a crop per row): no step lies beyond it
        row = np.zeros(len(steps), _I64)
        coords = first + steps
        lo_w = starts
    else:
        row, k = np.nonzero((steps[None, :, :] < counts[:, None, :]).all(axis=2))
        coords = first[row] + steps[k]
        lo_w = starts[row]
    origins = coords * chunks
    extents = np.minimum(chunks, shape - origins)
    lo = np.maximum(lo_w, origins)
    hi = np.minimum(lo_w + size, origins + extents)
    grid = -(-shape // chunks)
    strides = np.ones(ndim, _I64)
    for axis in range(ndim - 2, -1, -1):
        strides[axis] = strides[axis + 1] * grid[axis + 1]
    chunk_ids = (coords * strides).sum(axis=1, dtype=_I64)
    return row.astype(_I64, copy=False), ChunkPlan(chunk_ids, extents, lo - origins, lo - lo_w,
                                                   hi - lo)


@dataclass
class ReadPlan:
    """Everything a read does, decided before any byte is fetched.

    Blocks: ``block_index``/``block_number`` say which index and which of its blocks. Chunks
    that are found, sorted by block: their block (position in the plan's blocks), where their
    bytes start in the decoded block, their output row, extent and overlap. Chunks found in no
    index: their output row and overlap, to be filled.
    """

    window: tuple[int, ...]
    itemsize: int
    indexes: list[ChunkIndex]
    block_index: np.ndarray
    block_number: np.ndarray
    chunk_block: np.ndarray
    chunk_src: np.ndarray  # byte offset of the chunk in its decoded block
    chunk_length: np.ndarray  # bytes of values the chunk holds
    chunk_row: np.ndarray
    chunk_extent: np.ndarray
    chunk_src_start: np.ndarray
    chunk_dst_start: np.ndarray
    chunk_box: np.ndarray
    chunk_schema: np.ndarray  # position in ``schemas`` (string decoding needs the schema)
    fill_row: np.ndarray
    fill_dst_start: np.ndarray
    fill_box: np.ndarray
    fill_schema: np.ndarray
    schemas: list[Schema]

    @property
    def n_blocks(self) -> int:
        return len(self.block_index)

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_row)

    def blocks(self) -> list[tuple[bytes, int, str, int]]:
        """(stored bytes, decoded size, codec name, shuffle width: 1 for none) of every block
        the plan reads, in the order of the output rows that first need them, fetched from the
        storage now (what a raw decoder would have to decode)."""
        first_row = np.full(self.n_blocks, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first_row, self.chunk_block, self.chunk_row)
        out = []
        for b in np.argsort(first_row, kind="stable").tolist():
            i, n = int(self.block_index[b]), int(self.block_number[b])
            index = self.indexes[i]
            source = index.sources[int(index.block_source[n])]
            stored = source.fetch([int(index.block_offset[n])], [int(index.block_stored[n])])[0]
            codec, width = codecs.split_codec(int(index.block_codec[n]))
            out.append((bytes(stored), int(index.block_decoded[n]), codecs.CODEC_NAMES[codec],
                        width))
        return out

    def execute(self, out: np.ndarray, cache: "BlockCache | None" = None) -> None:
        """Fetch, decode and scatter into ``out`` (C-contiguous, shape (rows, *window))."""
        execute(self, out, cache)

    def block_bounds(self) -> np.ndarray:
        """Chunk rows of plan block b are ``bounds[b]:bounds[b + 1]``."""
        return np.searchsorted(self.chunk_block, np.arange(self.n_blocks + 1))


def plan_read(indexes: list[ChunkIndex], slots: np.ndarray, row_schemas: np.ndarray,
              schemas: list[Schema], start: tuple[int, ...], window: tuple[int, ...],
              itemsize: int, row_starts: np.ndarray | None = None) -> ReadPlan:
    """Plan reading ``window`` of the incarnations ``slots`` (row i has schema
    ``schemas[row_schemas[i]]``) from ``indexes`` (newest first), at ``start``, or at
    ``row_starts[i]`` for row i ((rows, ndim) ints, in bounds) when given."""
    n_rows = len(slots)
    groups = _distinct(row_schemas)
    parts = []
    fills = []
    for g in groups:
        rows = np.flatnonzero(row_schemas == g) if len(groups) > 1 else np.arange(n_rows)
        if row_starts is not None:  # a window per row: the plan's tables have a row per entry
            entry_row, plan = chunk_plan_rows(schemas[g], row_starts[rows], window)
            m = len(plan.chunk_ids)
            row_of, k_of = rows[entry_row], np.arange(m, dtype=_I64)
            want_slot, want_chunk = slots[row_of], plan.chunk_ids
        else:
            plan = chunk_plan(schemas[g], start, window)
            m = len(plan.chunk_ids)
            if m == 1 and len(groups) == 1 and len(indexes) == 1 and \
                    indexes[0].is_every_row(slots, plan.chunk_ids[0]):
                # a read of everything: chunk k is row k of the index (the columns
                # themselves, not copies: on these machines every fresh array of a million
                # rows costs faults)
                one = _same(0, n_rows)
                parts.append((one, None, rows, _rows_of(plan.extents, one, m),
                              _rows_of(plan.src_starts, one, m),
                              _rows_of(plan.dst_starts, one, m), _rows_of(plan.boxes, one, m),
                              _same(g, n_rows)))
                continue
            if m == 1:  # one chunk per row (the common case): no repeating of the rows
                want_slot = slots[rows] if len(groups) > 1 else slots
                want_chunk = np.full(len(rows), plan.chunk_ids[0], _I64)
                row_of, k_of = rows, np.zeros(len(rows), _I64)
            else:
                want_slot = np.repeat(slots[rows], m)
                want_chunk = np.tile(plan.chunk_ids, len(rows))
                row_of = np.repeat(rows, m)
                k_of = np.tile(np.arange(m), len(rows))
        if m == 0:
            continue
        which, where = _find(indexes, want_slot, want_chunk)
        missing = which < 0
        if missing.any():
            ks = k_of[missing]
            fills.append((row_of[missing], plan.dst_starts[ks], plan.boxes[ks],
                          np.full(int(missing.sum()), g, _I64)))
            present = np.flatnonzero(~missing)
            which, where, row_of, k_of = which[present], where[present], row_of[present], \
                k_of[present]
        if len(which):
            parts.append((which, where, row_of, _rows_of(plan.extents, k_of, m),
                          _rows_of(plan.src_starts, k_of, m), _rows_of(plan.dst_starts, k_of, m),
                          _rows_of(plan.boxes, k_of, m), _same(g, len(which))))
    ndim = len(window)
    if len(parts) == 1:
        which, where, row, extent, src_start, dst_start, box, schema_of = parts[0]
    elif parts:
        which, where, row, extent, src_start, dst_start, box, schema_of = (
            np.concatenate(cols) for cols in zip(*parts))
    else:
        which = where = row = schema_of = np.zeros(0, _I64)
        extent = src_start = dst_start = box = np.zeros((0, ndim), _I64)
    # the blocks to read: one per distinct (index, block), in index then block order
    if where is None:  # every row of the one index
        index = indexes[0]
        block_of, offset, length = index.block, index.offset, index.length
    elif len(indexes) == 1 or not (which > 0).any():
        index = indexes[0]
        block_of, offset, length = index.block[where], index.offset[where], index.length[where]
    else:
        block_of = np.empty(len(which), _I64)
        offset = np.empty(len(which), _I64)
        length = np.empty(len(which), _I64)
        for i, index in enumerate(indexes):
            mine = which == i
            if mine.any():
                rows_i = where[mine]
                block_of[mine] = index.block[rows_i]
                offset[mine] = index.offset[rows_i]
                length[mine] = index.length[rows_i]
    # a block number is far below 2**40; with one index, the block number alone
    combined = block_of if len(indexes) == 1 else which * (1 << 40) + block_of
    if len(combined) < 2 or bool(np.all(combined[1:] >= combined[:-1])):
        sorted_combined = combined  # rows in block order already: nothing to reorder
    else:
        order = np.argsort(combined, kind="stable")
        sorted_combined = combined[order]
        offset, length, row, extent, src_start, dst_start, box, schema_of = (
            a[order] for a in (offset, length, row, extent, src_start, dst_start, box,
                               schema_of))
    new_block = np.ones(len(sorted_combined), bool)
    new_block[1:] = sorted_combined[1:] != sorted_combined[:-1]
    block_key = sorted_combined[new_block]
    chunk_block = np.cumsum(new_block, dtype=_I64)
    chunk_block -= 1
    if fills:
        f_row, f_dst, f_box, f_schema = (np.concatenate(cols) for cols in zip(*fills))
    else:
        f_row = f_schema = np.zeros(0, _I64)
        f_dst = f_box = np.zeros((0, ndim), _I64)
    return ReadPlan(tuple(window), itemsize, indexes, block_key >> 40, block_key & ((1 << 40) - 1),
                    chunk_block, offset, length, row, extent, src_start, dst_start, box,
                    schema_of, f_row, f_dst, f_box, f_schema, schemas)


def _find(indexes: list[ChunkIndex], slots: np.ndarray, chunks: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """(index, row) of each wanted (slot, chunk) in the first of ``indexes`` that has it;
    (-1, -1) where none has."""
    found = indexes[0].find(slots, chunks)
    which = np.where(found >= 0, 0, -1)
    for i, index in enumerate(indexes[1:], 1):
        todo = np.flatnonzero(which < 0)
        if not len(todo):
            break
        more = index.find(slots[todo], chunks[todo])
        hit = more >= 0
        which[todo[hit]] = i
        found[todo[hit]] = more[hit]
    return which, found


def _same(value: int, n: int) -> np.ndarray:
    """``n`` int64s equal to ``value``: a read-only broadcast when ``n`` is large (a fresh
    array of a row per dataset costs page faults), a small array otherwise (a broadcast costs
    microseconds of Python, a few of them a read of one dataset)."""
    if n > SMALL_TABLE_ROWS:
        return np.broadcast_to(np.int64(value), (n,))
    return np.full(n, value, _I64)


def _rows_of(table: np.ndarray, ks: np.ndarray, m: int) -> np.ndarray:
    """Rows ``ks`` of a plan table (a broadcast of its one row when the plan has one chunk)."""
    if m == 1 and len(ks) == 1:
        return table
    if m == 1:
        return np.broadcast_to(table[0], (len(ks), table.shape[1]))
    return table[ks]


def _distinct(values: np.ndarray) -> list[int]:
    """Distinct integers in order of first appearance. (Not ``np.unique``: its first call imports
    ``numpy.ma``, ~20 ms of a fresh process's first read.)"""
    if len(values) and (values == values[0]).all():
        return [int(values[0])]
    return list(dict.fromkeys(values.tolist()))


# -- fetch, decode, scatter --------------------------------------------------------------------

def execute(plan: ReadPlan, out: np.ndarray, cache: BlockCache | None) -> None:
    """Carry out ``plan`` into ``out`` (shape (rows, *window), C-contiguous)."""
    if out.size == 0:
        return
    if len(plan.fill_row):
        _fill(plan, out)
    if not plan.n_blocks:
        return
    decoded = int(sum(plan.indexes[int(i)].block_decoded[int(n)]
                      for i, n in zip(plan.block_index[:64], plan.block_number[:64])))
    if cache is not None and (plan.n_blocks > 64 or decoded > cache.budget // 4):
        # a bulk read: its blocks would only push out what small reads keep, and reading them
        # again decodes them again (the cache is for reading datasets one by one)
        cache = None
    blocks = _fetch(plan, cache)
    bounds = plan.block_bounds()
    if out.dtype == object:
        for b in range(plan.n_blocks):
            _scatter_strings(plan, b, bounds, _decoded(plan, b, blocks[b], cache), out)
        return
    row_bytes = math.prod(plan.window) * plan.itemsize
    tables = _scatter_tables(plan, row_bytes)
    out_bytes = out.reshape(-1).view(np.uint8)
    sizes = _block_sizes(plan)
    # blocks that are one stretch of out need no scatter kernel (nor Numba, in a new process)
    direct = _direct_blocks(tables, bounds, sizes)
    # what each block's chunks copy: a shuffled block decoded into a group is unshuffled there
    spans = _needed_spans(plan, tables, bounds) if cache is None and not direct.all() else None

    def work(block_numbers):
        group = _Group(plan, tables, bounds, out_bytes)
        for b in block_numbers:
            lo = bounds[b]
            if direct[b]:
                start = int(tables.run_dst[lo])
                target = out_bytes[start : start + int(sizes[b])]
                if isinstance(blocks[b], tuple):  # decoded already: the cache's copy
                    target[:] = np.frombuffer(blocks[b][1], np.uint8)
                    continue
                index, n = plan.indexes[int(plan.block_index[b])], int(plan.block_number[b])
                raw = decode_block(index, n, blocks[b], None, into=target)  # straight into out
                if not (isinstance(raw, memoryview) and raw.obj is target):
                    target[:] = np.frombuffer(raw, np.uint8)  # not decoded in place: copied
                if cache is not None:
                    _keep(cache, index, n, target)
                continue
            if spans is not None and sizes[b] <= GROUP_BYTES:
                group.add(b, blocks[b], int(sizes[b]), (spans[0][b], spans[1][b]))
                continue
            # a block of the cache's reads, or too big for a group: decoded and copied alone
            _scatter(tables, slice(lo, bounds[b + 1]), _decoded(plan, b, blocks[b], cache),
                     out_bytes)
        group.copy()

    if plan.n_blocks < 2 or decoded < PARALLEL_MIN_BYTES:
        work(range(plan.n_blocks))
        return
    run_shared(_batches(sizes, min(plan.n_blocks, 4 * worker_pool()._max_workers)), work)


def _batches(sizes: np.ndarray, count: int) -> list[list[int]]:
    """``count`` lists of block numbers for the worker threads, biggest blocks first: block i
    of the blocks sorted by decoded size goes to list ``i % count``, so the threads, taking the
    lists in order, start on the big blocks and end on the small ones (a store flushed often
    holds a few big blocks and many small ones; cut in plan order, two big ones could share a
    list while the other thread ran out of work)."""
    order = np.argsort(-sizes, kind="stable")
    return [order[i::count].tolist() for i in range(count)]


def _keep(cache: BlockCache, index: ChunkIndex, n: int, decoded: np.ndarray) -> None:
    """Put a copy of block ``n`` of ``index``, decoded into the output, in the cache. (A numpy
    copy, not ``tobytes``: that one copies holding the GIL, which the other decoding threads
    then wait for.)"""
    source = index.sources[int(index.block_source[n])]
    if source.cache_id is not None and len(decoded) <= cache.budget // 8:
        kept = decoded.copy()
        kept.flags.writeable = False
        cache.put((source.cache_id, int(index.block_offset[n])), kept)


def _block_sizes(plan: ReadPlan) -> np.ndarray:
    """The decoded size of every plan block."""
    sizes = np.empty(plan.n_blocks, _I64)
    for i in _distinct(plan.block_index):
        mine = plan.block_index == i
        sizes[mine] = plan.indexes[i].block_decoded[plan.block_number[mine]]
    return sizes


def _direct_blocks(t: "_ScatterTables", bounds: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per plan block: whether its decoded bytes are, byte for byte, one stretch of the output
    (whole chunks back to back in output order, nothing else in the block: a stacked read of
    many datasets' one-chunk arrays). Such a block is decoded straight into place."""
    n = len(t.run)
    lo, hi = bounds[:-1], bounds[1:]
    if not n:
        return np.zeros(0, bool)
    # chunk i goes on where chunk i - 1 ended, in both (one temporary at a time: these
    # tables have a row per dataset)
    follows = np.zeros(n, bool)
    step = np.subtract(t.run_src[1:], t.run_src[:-1])
    follows[1:] = step == t.run[:-1]
    np.subtract(t.run_dst[1:], t.run_dst[:-1], out=step)
    follows[1:] &= step == t.run[:-1]
    del step
    follows[lo] = t.run_src[lo] == 0  # a block's first chunk starts it
    follows &= t.run >= 0
    whole = np.logical_and.reduceat(follows, lo)
    return whole & (t.run_src[hi - 1] + t.run[hi - 1] == sizes)


def _fill(plan: ReadPlan, out: np.ndarray) -> None:
    for g in _distinct(plan.fill_schema):
        pick = np.flatnonzero(plan.fill_schema == g)
        schema = plan.schemas[g]
        value = fill_scalar(schema.dtype, schema.fill)
        rows = plan.fill_row[pick]
        if out.dtype == object:
            for r, s, b in zip(rows.tolist(), plan.fill_dst_start[pick].tolist(),
                               plan.fill_box[pick].tolist()):
                out[(r, *(slice(a, a + w) for a, w in zip(s, b)))] = value
            continue
        n = len(pick)
        window = np.broadcast_to(np.array(plan.window, _I64), (n, len(plan.window)))
        row_bytes = math.prod(plan.window) * plan.itemsize
        kernels.fill_regions(out.reshape(-1).view(np.uint8), rows * row_bytes, window,
                             plan.fill_dst_start[pick], plan.fill_box[pick],
                             np.asarray(value, schema.dtype.storage))


def _fetch(plan: ReadPlan, cache: BlockCache | None) -> list:
    """The stored bytes of every plan block (None where the cache holds it decoded)."""
    out: list = [None] * plan.n_blocks
    for i in _distinct(plan.block_index):
        index = plan.indexes[i]
        picks = np.flatnonzero(plan.block_index == i)
        numbers = plan.block_number[picks]
        sources = index.block_source[numbers]
        for s in _distinct(sources):
            source = index.sources[s]
            mine = picks[sources == s]
            nums = plan.block_number[mine]
            if cache is not None and source.cache_id is not None:
                cached = [cache.get((source.cache_id, int(index.block_offset[n]))) for n in
                          nums.tolist()]
                keep = np.array([c is None for c in cached], bool)
                for p, c in zip(mine.tolist(), cached):
                    if c is not None:
                        out[p] = ("decoded", c)
                mine, nums = mine[keep], nums[keep]
                if not len(mine):
                    continue
            offsets = index.block_offset[nums]
            lengths = index.block_stored[nums]
            order = np.argsort(offsets, kind="stable")
            offsets, lengths = offsets[order], lengths[order]
            starts, ends, group = _coalesce(offsets, lengths)
            blobs = [memoryview(blob) for blob in
                     source.fetch(starts.tolist(), (ends - starts).tolist())]
            rel = offsets - starts[group]
            for p, g, r, e in zip(mine[order].tolist(), group.tolist(), rel.tolist(),
                                  (rel + lengths).tolist()):
                out[p] = blobs[g][r:e]
    return out


def _coalesce(offsets: np.ndarray, lengths: np.ndarray, gap: int = COALESCE_GAP):
    """Group sorted byte ranges whose gaps are below ``gap``: (starts, ends, group of each)."""
    ends = offsets + lengths
    new_group = np.ones(len(offsets), bool)
    if len(offsets) > 1:
        new_group[1:] = offsets[1:] > np.maximum.accumulate(ends)[:-1] + gap
    group = np.cumsum(new_group) - 1
    starts = offsets[new_group]
    group_ends = np.maximum.reduceat(ends, np.flatnonzero(new_group)) if len(offsets) else ends
    return starts, group_ends, group


def _decoded(plan: ReadPlan, b: int, fetched, cache: BlockCache | None):
    """Block ``b`` of the plan decoded (from the cache's copy when ``fetched`` is one)."""
    if isinstance(fetched, tuple):
        return fetched[1]
    index, n = plan.indexes[int(plan.block_index[b])], int(plan.block_number[b])
    return decode_block(index, n, fetched, cache)


def _needed_spans(plan: ReadPlan, t: "_ScatterTables", bounds: np.ndarray
                  ) -> tuple[list[int], list[int]]:
    """Per plan block, [first, end) of its decoded bytes that its chunks copy: a byte run each,
    or a box from its first to its last element (C order); (0, 0) for a block none copies
    from. Computed for all chunks at once (blocks of one chunk each are common)."""
    n = len(t.run)
    first = np.array(t.run_src, _I64)
    end = first + t.run
    boxed = np.flatnonzero(t.run < 0)
    if len(boxed):
        extents, starts = plan.chunk_extent[boxed], plan.chunk_src_start[boxed]
        boxes = plan.chunk_box[boxed]
        strides = np.ones(extents.shape, _I64)
        if extents.shape[1] > 1:
            strides[:, :-1] = np.cumprod(extents[:, :0:-1], axis=1)[:, ::-1]
        base = plan.chunk_src[boxed]
        first[boxed] = base + (starts * strides).sum(axis=1) * plan.itemsize
        end[boxed] = base + (((starts + boxes - 1) * strides).sum(axis=1) + 1) * plan.itemsize
        empty = boxed[(boxes <= 0).any(axis=1)]
        first[empty], end[empty] = np.iinfo(np.int64).max, 0
    if not n:
        return [0] * (len(bounds) - 1), [0] * (len(bounds) - 1)
    lo = np.minimum.reduceat(first, bounds[:-1])
    hi = np.maximum.reduceat(end, bounds[:-1])
    return np.minimum(lo, hi).tolist(), hi.tolist()


def decode_block(index: ChunkIndex, n: int, fetched, cache: BlockCache | None, into=None,
                 span: tuple[int, int] | None = None):
    """The decoded bytes of block ``n`` of ``index`` from its ``fetched`` stored bytes: checked
    against its crc, decoded to exactly the size the index declares. ``into``: a buffer to
    decode into where the codec can (see ``codecs.decode``); such bytes are never cached.
    ``span``: with ``into``, the only bytes the caller reads (see ``codecs.decode``)."""
    source = index.sources[int(index.block_source[n])]
    if source.decoded:
        return fetched
    decoded_len = int(index.block_decoded[n])
    offset = int(index.block_offset[n])
    if len(fetched) != int(index.block_stored[n]):
        raise CorruptionError(f"{source.where()}: block at offset {offset} is truncated")
    if codecs.block_checksum(int(index.block_codec[n]), fetched) != int(index.block_crc[n]):
        raise CorruptionError(f"{source.where()}: block at offset {offset} fails its checksum")
    tail = source.tail(n)  # bytes stored after the frame uncompressed (format version 1)
    frame = memoryview(fetched)[: len(fetched) - tail] if tail else fetched
    try:
        if cache is CHECK_ONLY:
            codecs.check_decodes(int(index.block_codec[n]), frame, decoded_len - tail)
            return None
        raw = codecs.decode(int(index.block_codec[n]), frame, decoded_len - tail,
                            into=None if tail else into, span=None if tail else span)
    except CorruptionError as err:
        raise CorruptionError(f"{source.where()}: block at offset {offset}: {err}") from err
    if tail:
        raw = bytes(raw) + bytes(memoryview(fetched)[len(fetched) - tail :])
    if cache is not None and source.cache_id is not None and into is None:
        cache.put((source.cache_id, offset), raw)
    return raw


# as the cache of fetch_block: check the block (checksum, decoding to its size) without
# keeping its decoded bytes, in bounded memory whatever size it claims (verify())
CHECK_ONLY = BlockCache(0)


def fetch_block(index: ChunkIndex, n: int, cache: BlockCache | None):
    """The decoded bytes of block ``n`` of ``index``, from the cache or its source (None for
    ``cache=CHECK_ONLY``)."""
    source = index.sources[int(index.block_source[n])]
    offset = int(index.block_offset[n])
    if cache is not None and source.cache_id is not None:
        found = cache.get((source.cache_id, offset))
        if found is not None:
            return found
    fetched = source.fetch([offset], [int(index.block_stored[n])])[0]
    return decode_block(index, n, fetched, cache)


@dataclass
class _ScatterTables:
    """Per planned chunk: a contiguous byte run (run >= 0) or a box copy."""

    run: np.ndarray
    run_src: np.ndarray
    run_dst: np.ndarray
    boxes: kernels.BoxScatter | None  # the box copies, prepared once for every block


def _scatter_tables(plan: ReadPlan, row_bytes: int) -> _ScatterTables:
    itemsize = plan.itemsize
    window = plan.window
    ndim = len(window)
    n = len(plan.chunk_row)
    extents, boxes = plan.chunk_extent, plan.chunk_box
    # one chunk shape and overlap for every chunk (broadcast tables): checked once, not per row
    uniform = n > 0 and extents.strides[0] == 0 and boxes.strides[0] == 0 and \
        plan.chunk_src_start.strides[0] == 0 and plan.chunk_dst_start.strides[0] == 0
    if uniform:
        expected = math.prod(extents[0].tolist()) * itemsize
        bad = np.flatnonzero(plan.chunk_length != expected)[:1]
    else:
        expected = (np.prod(extents, axis=1) if ndim else np.ones(n, _I64)) * itemsize
        bad = np.flatnonzero(expected != plan.chunk_length)
    if len(bad):
        i = int(bad[0])
        expected = expected if uniform else expected[i]
        index = plan.indexes[int(plan.block_index[plan.chunk_block[i]])]
        raise CorruptionError(
            f"{index.sources[0].where() if index.sources else 'store'}: a chunk holds "
            f"{int(plan.chunk_length[i])} bytes, its extent needs {int(expected)}")
    dst_offsets = plan.chunk_row * row_bytes
    if ndim == 0:
        run = np.broadcast_to(np.int64(itemsize), (n,))
        run_src = plan.chunk_src
        run_dst = dst_offsets
    elif uniform:
        inner = math.prod(window[1:]) * itemsize
        box, extent = boxes[0].tolist(), extents[0].tolist()
        full = box[1:] == extent[1:] == list(window[1:])
        run = np.broadcast_to(np.int64(box[0] * inner if full else -1), (n,))
        src_shift = int(plan.chunk_src_start[0, 0]) * inner
        dst_shift = int(plan.chunk_dst_start[0, 0]) * inner
        run_src = plan.chunk_src + src_shift if src_shift else plan.chunk_src
        run_dst = dst_offsets + dst_shift if dst_shift else dst_offsets
    else:
        # whole trailing axes on both sides: the overlap is one contiguous byte run
        inner = math.prod(window[1:]) * itemsize
        full = np.all((boxes[:, 1:] == extents[:, 1:]) &
                      (extents[:, 1:] == np.array(window[1:], _I64)), axis=1)
        run = np.where(full, boxes[:, 0] * inner, -1)
        run_src = plan.chunk_src + plan.chunk_src_start[:, 0] * inner
        run_dst = dst_offsets + plan.chunk_dst_start[:, 0] * inner
    boxes_table = None
    if (run < 0).any():
        boxes_table = kernels.BoxScatter(
            plan.chunk_src, extents, plan.chunk_src_start, dst_offsets,
            np.broadcast_to(np.array(window, _I64), (n, ndim)), plan.chunk_dst_start, boxes,
            itemsize)
    return _ScatterTables(run, run_src, run_dst, boxes_table)


class _Group:
    """Blocks a read copies boxes or runs from, decoded side by side into this thread's buffer
    (GROUP_BYTES of them at most) and copied from together: one compiled call per group, not
    a copy per block. Each call, like each decode, gives up the GIL and then waits to take it
    back from the other decoding threads: 256 windows of 256 one-chunk blocks read in 15-16
    ms so, against 23-26 ms with a copy per block."""

    def __init__(self, plan: ReadPlan, tables: "_ScatterTables", bounds: np.ndarray, out_bytes):
        self.plan, self.tables, self.bounds, self.out_bytes = plan, tables, bounds, out_bytes
        self.blocks: list[int] = []
        self.bases: list[int] = []  # where each block starts in the buffer
        self.used = 0
        self.buffer = None

    def add(self, b: int, fetched, size: int, span: tuple[int, int]) -> None:
        """Decode plan block ``b`` (``size`` bytes decoded, of which the read needs ``span``)
        into the group, copying the group first when it would not fit."""
        if self.blocks and self.used + size > GROUP_BYTES:
            self.copy()
        if not self.blocks:
            self.buffer, self.used = thread_buffer("group", GROUP_BYTES), 0
        plan = self.plan
        into = memoryview(self.buffer)[self.used : self.used + size]
        index, n = plan.indexes[int(plan.block_index[b])], int(plan.block_number[b])
        raw = decode_block(index, n, fetched, None, into=into, span=span)
        if not (isinstance(raw, memoryview) and raw.obj is self.buffer):
            into[:] = raw  # a codec that does not decode into a buffer
        self.blocks.append(b)
        self.bases.append(self.used)
        self.used += size

    def copy(self) -> None:
        """Copy every chunk of the group's blocks into the output; the group is empty after."""
        if not self.blocks:
            return
        bounds = self.bounds
        los = bounds[self.blocks]
        counts = bounds[np.asarray(self.blocks) + 1] - los
        # the blocks' chunk rows one after the other, and each row's block's start
        rows = np.repeat(los - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        shift = np.repeat(np.asarray(self.bases, _I64), counts)
        _scatter(self.tables, rows, self.buffer, self.out_bytes, shift)
        self.blocks, self.bases = [], []


def _scatter(t: _ScatterTables, rows, decoded, out_bytes,
             shift: np.ndarray | None = None) -> None:
    """Copy the chunks ``rows`` (an index array, or a slice for one block's) from their
    decoded block(s) into ``out``: one block's bytes, or blocks decoded side by side with
    ``shift`` giving, per row, where its block starts."""
    src = np.frombuffer(decoded, np.uint8)
    runs = t.run[rows]
    is_run = runs >= 0
    if is_run.all():  # byte runs only (whole trailing axes, 0-D values)
        src_at = t.run_src[rows] if shift is None else t.run_src[rows] + shift
        kernels.scatter_runs(src, src_at, out_bytes, t.run_dst[rows], runs)
        return
    if is_run.any():
        if isinstance(rows, slice):
            rows = np.arange(rows.start, rows.stop)
        pick = rows[is_run]
        src_at = t.run_src[pick] if shift is None else t.run_src[pick] + shift[is_run]
        kernels.scatter_runs(src, src_at, out_bytes, t.run_dst[pick], runs[is_run])
        rows = rows[~is_run]
        shift = None if shift is None else shift[~is_run]
    t.boxes.run(src, out_bytes, rows, src_shift=shift)


def _scatter_strings(plan: ReadPlan, b: int, bounds: np.ndarray, decoded, out: np.ndarray):
    view = memoryview(decoded)
    index = plan.indexes[int(plan.block_index[b])]
    where = index.sources[int(index.block_source[int(plan.block_number[b])])].where()
    for i in range(int(bounds[b]), int(bounds[b + 1])):
        schema = plan.schemas[int(plan.chunk_schema[i])]
        src = int(plan.chunk_src[i])
        extent = tuple(int(e) for e in plan.chunk_extent[i])
        values = _chunks.decode_values(schema, view[src : src + int(plan.chunk_length[i])],
                                       extent, f"{where}: string chunk")
        box = plan.chunk_box[i].tolist()
        s = plan.chunk_src_start[i].tolist()
        d = plan.chunk_dst_start[i].tolist()
        out[(int(plan.chunk_row[i]), *(slice(a, a + w) for a, w in zip(d, box)))] = \
            values[tuple(slice(a, a + w) for a, w in zip(s, box))]


def read_chunk(indexes: list[ChunkIndex], schema: Schema, slot: int, chunk: int,
               extent: tuple[int, ...], cache: BlockCache | None):
    """(values, written mask or None) of one stored chunk, or None when it was never stored."""
    for index in indexes:
        found = int(index.find(np.array([slot], _I64), np.array([chunk], _I64))[0])
        if found < 0:
            continue
        n = int(index.block[found])
        view = memoryview(fetch_block(index, n, cache))
        start, length = int(index.offset[found]), int(index.length[found])
        mask = int(index.mask[found])
        where = index.sources[int(index.block_source[n])].where()
        values = _chunks.decode_values(schema, bytes(view[start : start + length]), extent,
                                       where)
        written = _chunks.unpack_mask(view[start + length : start + length + mask], extent) \
            if mask else None
        return values, written
    return None
