"""Drivers of the Numba kernels: validate, fold, allocate, then call the compiled loop.

The compiled loops (``_copy``, ``_stats``, ``_shuffle``, ``_bloom``) are private and see only
arrays and plain scalars. Object (string) arrays never reach them. What is one copy (one box,
runs back to back, the box of :func:`copy_window`) is one numpy assignment with the same bounds
checks: the loops are for many boxes or runs at once.

numba is imported when a driver first needs a loop, not by ``import atlas``: opening a store,
listing it and a first small read never pay for the compiler (~0.4 s to import, ~0.1 s per
kernel loaded from cache). ``atlas.codecs`` shuffles with numpy until a process has loaded it
(see ``codecs.COMPILE_AFTER``).
"""

from __future__ import annotations

import importlib
import math
from typing import Sequence

import numpy as np

# how a dtype marks missing values besides the fill: 0 none, 1 NaN, 2 NaT (int64 min)
NULL_NONE, NULL_NAN, NULL_NAT = 0, 1, 2

__all__ = [
    "NULL_NAN",
    "NULL_NAT",
    "NULL_NONE",
    "block_partials",
    "bloom_bits",
    "chunk_partial",
    "copy_window",
    "fill_regions",
    "fold_partials",
    "scatter_boxes",
    "BoxScatter",
    "scatter_runs",
    "shuffle_bytes",
    "unshuffle_bytes",
]

_I64 = np.int64


def _loop(module: str, name: str):
    """A compiled loop, importing (so compiling or loading from cache) its module on first use."""
    found = _LOOPS.get(name)
    if found is None:
        found = _LOOPS[name] = getattr(importlib.import_module(f"atlas.kernels.{module}"), name)
    return found


_LOOPS: dict = {}


def loops_loaded() -> bool:
    """Whether this process has loaded a compiled loop already (so Numba is imported)."""
    return bool(_LOOPS)


def _table(values, rows: int, width: int, what: str) -> np.ndarray:
    table = np.ascontiguousarray(values, _I64)
    if table.shape != (rows, width):
        raise ValueError(f"{what} must have shape ({rows}, {width}), got {table.shape}")
    return table


def _column(values, rows: int, what: str) -> np.ndarray:
    column = np.ascontiguousarray(values, _I64)
    if column.shape != (rows,):
        raise ValueError(f"{what} must have {rows} values, got shape {column.shape}")
    return column


def _bytes_of(buffer, what: str) -> np.ndarray:
    array = buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, np.uint8)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise TypeError(f"{what} must be a 1-D uint8 buffer, got {array.dtype} {array.shape}")
    return array


def fold(shapes: np.ndarray, starts: np.ndarray, itemsize: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold the element size into the last axis; 0-D regions become one axis of itemsize bytes."""
    n, ndim = shapes.shape
    if ndim == 0:
        return np.full((n, 1), itemsize, _I64), np.zeros((n, 1), _I64)
    shapes = shapes.astype(_I64, copy=True)
    starts = starts.astype(_I64, copy=True)
    shapes[:, -1] *= itemsize
    starts[:, -1] *= itemsize
    return shapes, starts


def scatter_runs(src, src_offsets, dst, dst_offsets, lengths) -> None:
    """Copy byte runs: run i is ``lengths[i]`` bytes from ``src[src_offsets[i]:]`` to
    ``dst[dst_offsets[i]:]`` (both buffers bytes-like, every run bounds-checked). Runs back to
    back on both sides (one run, or a block's chunks moved whole) fold into one copy, which
    needs no compiled loop: a process whose reads and merges move only such runs never loads
    Numba."""
    n = len(lengths)
    src, dst = _bytes_of(src, "src"), _bytes_of(dst, "dst")
    src_offsets = _column(src_offsets, n, "src_offsets")
    dst_offsets = _column(dst_offsets, n, "dst_offsets")
    lengths = _column(lengths, n, "lengths")
    if n and _back_to_back(src_offsets, dst_offsets, lengths):
        start, size, to = int(src_offsets[0]), int(lengths.sum()), int(dst_offsets[0])
        if (lengths < 0).any() or start < 0 or to < 0 or start + size > len(src) or \
                to + size > len(dst):
            raise IndexError("run outside its buffer")
        dst[to : to + size] = src[start : start + size]
        return
    _loop("_copy", "_move_runs")(src, src_offsets, dst, dst_offsets, lengths)


def _back_to_back(src_offsets: np.ndarray, dst_offsets: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether each run starts where the one before ended, in ``src`` and in ``dst``."""
    ends = lengths[:-1]
    return bool(np.array_equal(src_offsets[1:], src_offsets[:-1] + ends) and
                np.array_equal(dst_offsets[1:], dst_offsets[:-1] + ends))


def shuffle_bytes(src, dst, width: int) -> None:
    """The whole ``width``-byte values of ``src`` (uint8 buffers) shuffled into ``dst``: byte
    k of value i to ``k * n + i`` (n whole values); bytes after them are left to the caller."""
    src, dst = _bytes_of(src, "src"), _bytes_of(dst, "dst")
    _check_width(width)
    if len(dst) < len(src) // width * width:
        raise IndexError(f"dst holds {len(dst)} bytes, the shuffle writes {len(src)}")
    _loop("_shuffle", "_shuffle_values")(src, dst, width)


def unshuffle_bytes(src, dst, width: int, lo: int, hi: int) -> None:
    """Values ``lo:hi`` of the shuffled ``src`` back into ``dst[lo * width : hi * width]``
    (uint8 buffers; the inverse of :func:`shuffle_bytes`)."""
    src, dst = _bytes_of(src, "src"), _bytes_of(dst, "dst")
    _check_width(width)
    if not 0 <= lo <= hi <= len(src) // width or hi * width > len(dst):
        raise IndexError(f"values {lo}:{hi} of width {width} do not fit src of {len(src)} "
                         f"bytes and dst of {len(dst)}")
    if hi > lo:
        _loop("_shuffle", "_unshuffle_values")(src, dst, width, lo, hi)


def _check_width(width: int) -> None:
    if width not in (2, 4, 8):
        raise ValueError(f"shuffle width must be 2, 4 or 8, got {width}")


def scatter_boxes(src, src_offsets, src_shapes, src_starts, dst, dst_offsets, dst_shapes,
                  dst_starts, boxes, itemsize: int) -> None:
    """For each row i, copy box i (element counts) from the C-ordered region i of ``src`` (at
    byte offset ``src_offsets[i]``, of shape ``src_shapes[i]``) into region i of ``dst``."""
    BoxScatter(src_offsets, src_shapes, src_starts, dst_offsets, dst_shapes, dst_starts, boxes,
               itemsize).run(src, dst)


class BoxScatter:
    """:func:`scatter_boxes` with its tables checked and folded once, for a read that copies
    the boxes of many blocks one block at a time: ``run(src, dst, rows)`` copies the boxes of
    ``rows`` (a slice or index array of the tables' rows) with one compiled call and no
    per-call Python work beyond it (the decode threads would queue on the GIL for it)."""

    def __init__(self, src_offsets, src_shapes, src_starts, dst_offsets, dst_shapes,
                 dst_starts, boxes, itemsize: int):
        boxes = np.asarray(boxes, _I64)
        n, ndim = boxes.shape if boxes.ndim == 2 else (len(boxes), 0)
        boxes = boxes.reshape(n, ndim)
        self.src_shapes, self.src_starts = fold(_table(src_shapes, n, ndim, "src_shapes"),
                                                _table(src_starts, n, ndim, "src_starts"),
                                                itemsize)
        self.dst_shapes, self.dst_starts = fold(_table(dst_shapes, n, ndim, "dst_shapes"),
                                                _table(dst_starts, n, ndim, "dst_starts"),
                                                itemsize)
        self.boxes, _ = fold(boxes, boxes, itemsize)
        self.src_offsets = _column(src_offsets, n, "src_offsets")
        self.dst_offsets = _column(dst_offsets, n, "dst_offsets")
        self._views: list | None = None  # per row, what a one-box copy needs (see _one_box)

    def run(self, src, dst, rows=slice(None), src_shift: np.ndarray | None = None) -> None:
        """``src_shift``: per row of ``rows``, bytes added to its source offset (the boxes of
        several blocks decoded side by side into one buffer)."""
        src, dst = _bytes_of(src, "src"), _bytes_of(dst, "dst")
        one = _one_row(rows, len(self.boxes))
        if one is not None:  # one box (a block of one chunk): numpy's strided copy
            if self._views is None:
                self._views = _box_views(self)
            view = self._views[one]
            if view is not None and src_shift is not None:
                box, (s_first, s_end, s_strides), d_side = view
                shift = int(src_shift[0])
                view = (box, (s_first + shift, s_end + shift, s_strides), d_side)
            _one_box(src, dst, view)
            return
        tables = (self.src_offsets[rows], self.src_shapes[rows], self.src_starts[rows],
                  self.dst_offsets[rows], self.dst_shapes[rows], self.dst_starts[rows],
                  self.boxes[rows])
        # every region is bounds-checked by the compiled loop itself
        s_off, s_shape, s_start, d_off, d_shape, d_start, boxes = tables
        if src_shift is not None:
            s_off = s_off + _column(src_shift, len(s_off), "src_shift")
        _loop("_copy", "_move_boxes")(src, s_off, s_shape, s_start, dst, d_off, d_shape,
                                      d_start, boxes)


def _one_row(rows, n: int) -> int | None:
    """The row ``rows`` (a slice or index array of a table of ``n`` rows) picks when it picks
    exactly one, else None."""
    if isinstance(rows, slice):
        picked = range(n)[rows]
        return picked[0] if len(picked) == 1 else None
    return int(rows[0]) if len(rows) == 1 else None


def _box_views(t: BoxScatter) -> list:
    """Per row of ``t``: None for an empty box, else (box, src side, dst side), each side
    (byte offset of the box's first byte, end of its region, the region's C strides): what
    two strided views of the box need. Checked for every row at once as ``_region_strides``
    checks a row (a box outside its region raises IndexError)."""
    used = t.boxes > 0
    sides = []
    for offsets, shapes, starts in ((t.src_offsets, t.src_shapes, t.src_starts),
                                    (t.dst_offsets, t.dst_shapes, t.dst_starts)):
        if ((used & ((starts < 0) | (starts + t.boxes > shapes))).any() or (offsets < 0).any()
                or (shapes < 0).any()):
            raise IndexError("box outside its region")
        # C-order strides of each region (bytes: the element size is folded into the last axis)
        strides = np.ones_like(shapes)
        if shapes.shape[1] > 1:
            strides[:, :-1] = np.cumprod(shapes[:, :0:-1], axis=1)[:, ::-1]
        first = offsets + (starts * strides).sum(axis=1)
        end = offsets + np.prod(shapes, axis=1)
        sides.append((first.tolist(), end.tolist(), [tuple(r) for r in strides.tolist()]))
    empty = (~used).any(axis=1).tolist()
    return [None if empty[i] else (tuple(box), *((first[i], end[i], strides[i])
                                                  for first, end, strides in sides))
            for i, box in enumerate(t.boxes.tolist())]


def _one_box(src: np.ndarray, dst: np.ndarray, view) -> None:
    """One row of ``_move_boxes`` (uint8 buffers, a row of :func:`_box_views`) as a numpy
    assignment between strided views of the two regions; a region outside its buffer raises
    IndexError, an empty box copies nothing."""
    if view is None:
        return
    box, (s_first, s_end, s_strides), (d_first, d_end, d_strides) = view
    if s_end > len(src) or d_end > len(dst):
        raise IndexError("region outside its buffer")
    np.ndarray(box, np.uint8, dst, d_first, d_strides)[...] = \
        np.ndarray(box, np.uint8, src, s_first, s_strides)


def _box_view(buffer, offset, shape, start, box: list) -> np.ndarray:
    """The view of ``box`` at ``start`` in the C-ordered region of ``shape`` at ``offset``
    of ``buffer``, checked as ``_region_strides`` checks it."""
    shape, start, offset = shape.tolist(), start.tolist(), int(offset)
    for a, w, n in zip(start, box, shape):
        if w > 0 and (a < 0 or a + w > n):
            raise IndexError("box outside its region")
    size = math.prod(shape)
    if offset < 0 or offset + size > len(buffer):
        raise IndexError("region outside its buffer")
    region = buffer[offset : offset + size].reshape(shape)
    return region[tuple(slice(a, a + max(w, 0)) for a, w in zip(start, box))]


def fill_regions(dst, dst_offsets, dst_shapes, dst_starts, boxes, value: np.ndarray) -> None:
    """For each row i, fill box i of region i of ``dst`` with ``value`` (a 0-D or 1-element
    array of the regions' dtype)."""
    value = np.asarray(value)
    boxes = np.asarray(boxes, _I64)
    n, ndim = boxes.shape if boxes.ndim == 2 else (len(boxes), 0)
    boxes = boxes.reshape(n, ndim)
    itemsize = value.dtype.itemsize
    shapes_b, starts_b = fold(_table(dst_shapes, n, ndim, "dst_shapes"),
                              _table(dst_starts, n, ndim, "dst_starts"), itemsize)
    boxes_b, _ = fold(boxes, boxes, itemsize)
    pattern = np.ascontiguousarray(value.reshape(1)).view(np.uint8)
    dst, dst_offsets = _bytes_of(dst, "dst"), _column(dst_offsets, n, "dst_offsets")
    if n == 1:  # one box: a numpy assignment, as for one box copied (see BoxScatter.run)
        box = boxes_b[0].tolist()
        view = _box_view(dst, dst_offsets[0], shapes_b[0], starts_b[0], box)
        if all(w > 0 for w in box):
            view[...] = np.tile(pattern, box[-1] // len(pattern))
        return
    _loop("_copy", "_fill_boxes")(dst, dst_offsets, shapes_b, starts_b, boxes_b, pattern)


def _box_slices(shape: tuple[int, ...], start: Sequence[int], box: Sequence[int],
                side: str) -> tuple[slice, ...]:
    start, box = tuple(int(v) for v in start), tuple(int(v) for v in box)
    if len(start) != len(shape) or len(box) != len(shape) or any(
            s < 0 or b < 0 or s + b > n for s, b, n in zip(start, box, shape)):
        raise IndexError(f"box of shape {box} at {start} does not fit the {side} of shape {shape}")
    return tuple(slice(s, s + b) for s, b in zip(start, box))


def copy_window(src: np.ndarray, src_start: Sequence[int], dst: np.ndarray,
                dst_start: Sequence[int], box: Sequence[int]) -> None:
    """``dst[dst_start:+box] = src[src_start:+box]`` for arrays of one dtype, bounds-checked:
    one box, so one numpy assignment (as ``BoxScatter`` does for a single box)."""
    if src.dtype != dst.dtype:
        raise TypeError(f"copy_window needs one dtype, got {src.dtype} and {dst.dtype}")
    dst[_box_slices(dst.shape, dst_start, box, "destination")] = \
        src[_box_slices(src.shape, src_start, box, "source")]


def chunk_partial(values: np.ndarray, written: np.ndarray | None, fill, has_fill: bool,
                  null_rule: int) -> tuple[int, int, object, object]:
    """(nulls, valid, min, max) of one chunk's values (numeric storage dtypes only); cells
    where ``written`` is 0 count as nulls."""
    flat = np.ascontiguousarray(values).reshape(-1)
    counts = np.zeros((1, 2), _I64)
    extremes = np.zeros((1, 2), flat.dtype)
    mask = np.zeros(0, np.uint8) if written is None else \
        np.ascontiguousarray(written, np.uint8).reshape(-1)
    keys, extreme_keys, mag, inf_bits = _keys(flat, extremes)
    _loop("_stats", "_chunk_partial")(flat, keys, mask, flat.dtype.type(fill), bool(has_fill),
                                      null_rule, mag, inf_bits, counts, extremes,
                                      extreme_keys)
    return int(counts[0, 0]), int(counts[0, 1]), extremes[0, 0], extremes[0, 1]


def block_partials(values: np.ndarray, starts, counts, fills: np.ndarray, has_fill: np.ndarray,
                   null_rule: int) -> tuple[np.ndarray, np.ndarray]:
    """Partials of many runs of one 1-D array (the chunks of one dtype in a block): returns
    (counts of shape (n, 2): nulls, valid; extremes of shape (n, 2) in the values' dtype)."""
    n = len(starts)
    starts, counts = _column(starts, n, "starts"), _column(counts, n, "counts")
    if n and (starts.min() < 0 or (starts + counts).max() > len(values) or counts.min() < 0):
        raise IndexError("a run lies outside the values")
    out_counts = np.zeros((n, 2), _I64)
    extremes = np.zeros((n, 2), values.dtype)
    keys, extreme_keys, mag, inf_bits = _keys(values, extremes)
    _loop("_stats", "_run_partials")(values, keys, starts, counts,
                                     np.ascontiguousarray(fills, values.dtype),
                                     np.ascontiguousarray(has_fill, np.uint8), null_rule,
                                     mag, inf_bits, out_counts, extremes, extreme_keys)
    return out_counts, extremes


def _keys(values: np.ndarray, extremes: np.ndarray):
    """What the statistics loops take besides the values: for floats their bits as signed
    integers of the same size, ``extremes`` viewed so, the magnitude mask and +inf's bits;
    integers are their own keys (the constants unused)."""
    if values.dtype.kind != "f":
        return values, extremes, values.dtype.type(0), values.dtype.type(0)
    as_int = np.dtype(f"i{values.dtype.itemsize}")
    mag = as_int.type(np.iinfo(as_int).max)
    inf_bits = np.array(np.inf, values.dtype).view(as_int)[()]
    return values.view(as_int), extremes.view(as_int), mag, inf_bits


def fold_partials(nulls: np.ndarray, valids: np.ndarray, mins: np.ndarray,
                  maxs: np.ndarray) -> tuple[int, int, object, object]:
    """Fold partials into (nulls, valid, min, max); min/max are None when no cell is valid."""
    if len(nulls) == 0:
        return 0, 0, None, None
    counts = np.zeros(2, _I64)
    extremes = np.zeros(2, mins.dtype)
    _loop("_stats", "_fold_partials")(np.ascontiguousarray(nulls, _I64),
                                      np.ascontiguousarray(valids, _I64),
                                      np.ascontiguousarray(mins), np.ascontiguousarray(maxs),
                                      counts, extremes)
    if counts[1] == 0:
        return int(counts[0]), 0, None, None
    return int(counts[0]), int(counts[1]), extremes[0], extremes[1]


def bloom_bits(hashes: np.ndarray, n_bytes: int, probes: int) -> np.ndarray:
    """A Bloom filter of ``n_bytes`` packed bytes with ``probes`` bits set per 64-bit hash (the
    probe sequence of ``atlas.format.bloom``)."""
    hashes = np.ascontiguousarray(hashes, np.uint64)
    if hashes.ndim != 1:
        raise ValueError(f"hashes must be 1-D, got shape {hashes.shape}")
    if n_bytes < 1 or probes < 1:
        raise ValueError(f"a filter needs n_bytes >= 1 and probes >= 1, got {n_bytes}, {probes}")
    out = np.zeros(n_bytes, np.uint8)
    _loop("_bloom", "_set_probe_bits")(hashes, n_bytes * 8, probes, out)
    return out
