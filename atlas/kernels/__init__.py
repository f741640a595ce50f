"""Drivers for the Numba kernels: validate, fold, allocate, then call the compiled loop.

Kernels (``boxes``, ``stats``, ``plan``) see only arrays and plain scalars. Object (string)
arrays never reach them: the drivers copy those with numpy slicing instead.

numba is imported when a kernel is first used (module ``__getattr__``), not by ``import atlas``:
opening a store and listing it never pays for the compiler.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple, Sequence

import numpy as np

# how a dtype marks missing values besides the fill: 0 none, 1 NaN, 2 NaT (int64 min)
NULL_NONE, NULL_NAN, NULL_NAT = 0, 1, 2

_KERNEL_HOMES = {
    "copy_boxes": "boxes", "fill_boxes": "boxes", "plan_window": "plan",
    "find_chunks": "plan", "chunk_stats": "stats", "merge_stats": "stats",
}


def __getattr__(name: str):
    home = _KERNEL_HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'atlas.kernels' has no attribute {name!r}")
    kernel = getattr(importlib.import_module(f"atlas.kernels.{home}"), name)
    globals()[name] = kernel  # later lookups skip __getattr__
    return kernel


def _kernel(name: str):
    """A compiled kernel by name, importing (and so compiling or loading) it on first use."""
    found = globals().get(name)
    return found if found is not None else __getattr__(name)

__all__ = [
    "NULL_NAN",
    "NULL_NAT",
    "NULL_NONE",
    "WindowPlan",
    "copy_box",
    "copy_many",
    "fill_box",
    "find",
    "merge_partials",
    "stats_partial",
    "window_plan",
]

_EMPTY_MASK = np.zeros(0, np.uint8)


def _table(rows: Sequence[Sequence[int]] | np.ndarray, ndim: int) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).reshape(1 if ndim == 0 else -1, ndim)


def fold(shapes: np.ndarray, starts: np.ndarray, itemsize: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold the element size into the last axis; 0-D regions become one axis of itemsize bytes."""
    n, ndim = shapes.shape
    if ndim == 0:
        return np.full((n, 1), itemsize, np.int64), np.zeros((n, 1), np.int64)
    shapes = shapes.copy()
    starts = starts.copy()
    shapes[:, -1] *= itemsize
    starts[:, -1] *= itemsize
    return shapes, starts


def _flat_bytes(a: np.ndarray) -> np.ndarray:
    if not a.flags.c_contiguous:
        raise ValueError("kernel buffers must be C-contiguous")
    return a.reshape(-1).view(np.uint8)


def _slices(start: Sequence[int], box: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + b) for s, b in zip(start, box))


def copy_many(
    src: np.ndarray,
    src_offsets: np.ndarray,
    src_shapes: np.ndarray,
    src_starts: np.ndarray,
    dst: np.ndarray,
    dst_offsets: np.ndarray,
    dst_shapes: np.ndarray,
    dst_starts: np.ndarray,
    boxes: np.ndarray,
    itemsize: int,
) -> None:
    """Copy box i between region i of two flat byte buffers (offsets in bytes, rest in elements)."""
    src_shapes_b, src_starts_b = fold(src_shapes, src_starts, itemsize)
    dst_shapes_b, dst_starts_b = fold(dst_shapes, dst_starts, itemsize)
    boxes_b, _ = fold(boxes, np.zeros_like(boxes), itemsize)
    _kernel("copy_boxes")(
        src, src_offsets.astype(np.int64), src_shapes_b, src_starts_b,
        dst, dst_offsets.astype(np.int64), dst_shapes_b, dst_starts_b, boxes_b,
    )


def copy_box(
    src: np.ndarray,
    src_start: Sequence[int],
    dst: np.ndarray,
    dst_start: Sequence[int],
    box: Sequence[int],
) -> None:
    """``dst[dst_start:+box] = src[src_start:+box]`` for C-contiguous arrays of one dtype."""
    if src.dtype != dst.dtype:
        raise TypeError(f"copy_box needs one dtype, got {src.dtype} and {dst.dtype}")
    if src.dtype.hasobject:
        dst[_slices(dst_start, box)] = src[_slices(src_start, box)]
        return
    ndim = src.ndim
    zero = np.zeros((1,), np.int64)
    copy_many(
        _flat_bytes(src), zero, _table(src.shape, ndim), _table(src_start, ndim),
        _flat_bytes(dst), zero, _table(dst.shape, ndim), _table(dst_start, ndim),
        _table(box, ndim), src.dtype.itemsize,
    )


def fill_box(dst: np.ndarray, dst_start: Sequence[int], box: Sequence[int], value) -> None:
    """``dst[dst_start:+box] = value`` for a C-contiguous array."""
    if dst.dtype.hasobject:
        dst[_slices(dst_start, box)] = value
        return
    ndim = dst.ndim
    pattern = np.asarray(value, dtype=dst.dtype).reshape(1).view(np.uint8)
    shapes, starts = fold(_table(dst.shape, ndim), _table(dst_start, ndim), dst.dtype.itemsize)
    boxes, _ = fold(_table(box, ndim), np.zeros((1, ndim), np.int64), dst.dtype.itemsize)
    _kernel("fill_boxes")(_flat_bytes(dst), np.zeros(1, np.int64), shapes, starts, boxes, pattern)


class WindowPlan(NamedTuple):
    """The chunks a window overlaps; row k of each table describes chunk k."""

    chunk_ids: np.ndarray  # (m,) linear chunk index in the array's chunk grid
    origins: np.ndarray  # (m, ndim) chunk origin in the array
    extents: np.ndarray  # (m, ndim) chunk shape, clipped at the array edge
    src_starts: np.ndarray  # (m, ndim) overlap start inside the chunk
    dst_starts: np.ndarray  # (m, ndim) overlap start inside the window
    boxes: np.ndarray  # (m, ndim) overlap shape


def window_plan(
    shape: Sequence[int], chunk_shape: Sequence[int], start: Sequence[int], window: Sequence[int]
) -> WindowPlan:
    """Plan which chunks an in-bounds window touches (the caller checked the bounds)."""
    ndim = len(shape)
    if any(w == 0 for w in window):
        empty = np.zeros((0, ndim), np.int64)
        return WindowPlan(np.zeros(0, np.int64), empty, empty, empty, empty, empty)
    m = 1
    for axis in range(ndim):
        first = start[axis] // chunk_shape[axis]
        last = (start[axis] + window[axis] - 1) // chunk_shape[axis]
        m *= last - first + 1
    tables = [np.empty((m, ndim), np.int64) for _ in range(5)]
    chunk_ids = np.empty(m, np.int64)
    as_i64 = [np.asarray(v, np.int64).reshape(ndim) for v in (shape, chunk_shape, start, window)]
    _kernel("plan_window")(*as_i64, chunk_ids, *tables)
    return WindowPlan(chunk_ids, *tables)


def find(
    index_slots: np.ndarray, index_chunks: np.ndarray, want_slots: np.ndarray,
    want_chunks: np.ndarray,
) -> np.ndarray:
    """Positions of wanted (slot, chunk) pairs in an index sorted by (slot, chunk); -1 if absent."""
    out = np.empty(len(want_slots), np.int64)
    _kernel("find_chunks")(index_slots, index_chunks, want_slots.astype(np.int64),
                want_chunks.astype(np.int64), out)
    return out


def stats_partial(values: np.ndarray, written: np.ndarray | None, fill, has_fill: bool,
                  null_rule: int) -> tuple[int, int, object, object]:
    """(nulls, valid, min, max) of one chunk's values (numeric storage dtypes only)."""
    flat = values.reshape(-1)
    counts = np.zeros(2, np.int64)
    extremes = np.zeros(2, flat.dtype)
    mask = _EMPTY_MASK if written is None else written.reshape(-1)
    _kernel("chunk_stats")(flat, mask, flat.dtype.type(fill), has_fill, null_rule, counts, extremes)
    return int(counts[0]), int(counts[1]), extremes[0], extremes[1]


def merge_partials(nulls: np.ndarray, valids: np.ndarray, mins: np.ndarray,
                   maxs: np.ndarray) -> tuple[int, int, object, object]:
    """Fold per-chunk partials into (nulls, valid, min, max); min/max are None when no valid."""
    if len(nulls) == 0:
        return 0, 0, None, None
    counts = np.zeros(2, np.int64)
    extremes = np.zeros(2, mins.dtype)
    _kernel("merge_stats")(nulls, valids, mins, maxs, counts, extremes)
    if counts[1] == 0:
        return int(counts[0]), 0, None, None
    return int(counts[0]), int(counts[1]), extremes[0], extremes[1]
