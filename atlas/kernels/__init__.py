"""Drivers for the Numba kernels: validate, fold, allocate, then call the compiled loop.

Kernels (``boxes``, ``stats``, ``plan``) see only arrays and plain scalars. Object (string)
arrays never reach them: the drivers copy those with numpy slicing instead.

numba is imported when a kernel is first used (module ``__getattr__``), not by ``import atlas``:
opening a store and listing it never pays for the compiler. A process's first kernel costs
~0.5 s (numba import, cache load, target set-up), more than hundreds of small reads take in all.
So reads plan, search and copy with plain numpy (a few microseconds more per chunk) until the
chunks they handled would have paid for that load (``NUMPY_BUDGET``, see :func:`numpy_path`);
then they load the kernels, as does any writer (a flush computes stats with them). Once one
kernel is loaded every job uses the kernels. Single boxes (``copy_box``, ``fill_box``) are
always numpy slicing.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple, Sequence

import numpy as np

# how a dtype marks missing values besides the fill: 0 none, 1 NaN, 2 NaT (int64 min)
NULL_NONE, NULL_NAN, NULL_NAT = 0, 1, 2

# Chunks (planned, searched, copied or filled) that numpy handles before the kernels load: at the
# few microseconds per chunk numpy costs over a kernel, about the ~0.5 s a first load costs, so
# no process spends more than about twice what it would with hindsight.
NUMPY_BUDGET = 100_000
_numpy_spent = 0
_kernel_loaded = False

_KERNEL_HOMES = {
    "copy_boxes": "boxes", "fill_boxes": "boxes", "plan_window": "plan",
    "find_chunks": "plan", "chunk_stats": "stats", "merge_stats": "stats",
}


def __getattr__(name: str):
    home = _KERNEL_HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'atlas.kernels' has no attribute {name!r}")
    global _kernel_loaded
    kernel = getattr(importlib.import_module(f"atlas.kernels.{home}"), name)
    globals()[name] = kernel  # later lookups skip __getattr__
    _kernel_loaded = True
    return kernel


def numpy_path(size: int) -> bool:
    """Whether a job of ``size`` chunks runs in numpy: no kernel is loaded and the budget allows.

    Threads may race on the tally; that only moves the switch by a job or two.
    """
    global _numpy_spent
    if _kernel_loaded or _numpy_spent + size > NUMPY_BUDGET:
        return False
    _numpy_spent += size
    return True


def _kernel(name: str):
    """A compiled kernel by name, importing (and so compiling or loading) it on first use."""
    found = globals().get(name)
    return found if found is not None else __getattr__(name)

__all__ = [
    "NULL_NAN",
    "NULL_NAT",
    "NULL_NONE",
    "NUMPY_BUDGET",
    "WindowPlan",
    "copy_box",
    "fill_box",
    "find",
    "merge_partials",
    "numpy_path",
    "stats_partial",
    "window_plan",
]

_EMPTY_MASK = np.zeros(0, np.uint8)


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


def _box_slices(shape: tuple[int, ...], start: Sequence[int], box: Sequence[int],
                side: str) -> tuple[slice, ...]:
    """The slices of a box, checked to lie inside ``shape`` (numpy would silently clip)."""
    start, box = tuple(int(v) for v in start), tuple(int(v) for v in box)
    if len(start) != len(shape) or len(box) != len(shape) or any(
            s < 0 or b < 0 or s + b > n for s, b, n in zip(start, box, shape)):
        raise IndexError(f"box of shape {box} at {start} does not fit the {side} of shape {shape}")
    return tuple(slice(s, s + b) for s, b in zip(start, box))


def copy_box(
    src: np.ndarray,
    src_start: Sequence[int],
    dst: np.ndarray,
    dst_start: Sequence[int],
    box: Sequence[int],
) -> None:
    """``dst[dst_start:+box] = src[src_start:+box]`` for arrays of one dtype, bounds-checked."""
    if src.dtype != dst.dtype:
        raise TypeError(f"copy_box needs one dtype, got {src.dtype} and {dst.dtype}")
    source = src[_box_slices(src.shape, src_start, box, "source")]
    dst[_box_slices(dst.shape, dst_start, box, "destination")] = source


def fill_box(dst: np.ndarray, dst_start: Sequence[int], box: Sequence[int], value) -> None:
    """``dst[dst_start:+box] = value``, bounds-checked."""
    dst[_box_slices(dst.shape, dst_start, box, "destination")] = value


class WindowPlan(NamedTuple):
    """The chunks a window overlaps; row k of each table describes chunk k."""

    chunk_ids: np.ndarray  # (m,) linear chunk index in the array's chunk grid
    origins: np.ndarray  # (m, ndim) chunk origin in the array
    extents: np.ndarray  # (m, ndim) chunk shape, clipped at the array edge
    src_starts: np.ndarray  # (m, ndim) overlap start inside the chunk
    dst_starts: np.ndarray  # (m, ndim) overlap start inside the window
    boxes: np.ndarray  # (m, ndim) overlap shape


def window_plan(
    shape: Sequence[int], chunk_shape: Sequence[int], start: Sequence[int], window: Sequence[int],
    *, compiled: bool = False,
) -> WindowPlan:
    """Plan which chunks an in-bounds window touches (the caller checked the bounds).

    ``compiled`` skips the numpy small-job path, for callers that will load kernels anyway.
    """
    ndim = len(shape)
    if any(w == 0 for w in window):
        empty = np.zeros((0, ndim), np.int64)
        return WindowPlan(np.zeros(0, np.int64), empty, empty, empty, empty, empty)
    m = 1
    for axis in range(ndim):
        first = start[axis] // chunk_shape[axis]
        last = (start[axis] + window[axis] - 1) // chunk_shape[axis]
        m *= last - first + 1
    as_i64 = [np.asarray(v, np.int64).reshape(ndim) for v in (shape, chunk_shape, start, window)]
    if not compiled and numpy_path(m):
        return _plan_numpy(*as_i64, m)
    tables = [np.empty((m, ndim), np.int64) for _ in range(5)]
    chunk_ids = np.empty(m, np.int64)
    _kernel("plan_window")(*as_i64, chunk_ids, *tables)
    return WindowPlan(chunk_ids, *tables)


def _plan_numpy(shape, chunk_shape, start, window, m: int) -> WindowPlan:
    """``plan_window`` in numpy, for plans of a few chunks."""
    ndim = len(shape)
    first = start // chunk_shape
    counts = (start + window - 1) // chunk_shape - first + 1
    # chunk coordinates, one row per chunk in C order (last axis fastest)
    coords = np.ascontiguousarray(np.indices(counts, np.int64).reshape(ndim, m).T) + first
    origins = coords * chunk_shape
    extents = np.minimum(chunk_shape, shape - origins)
    lo = np.maximum(start, origins)
    hi = np.minimum(start + window, origins + extents)
    grid = -(-shape // chunk_shape)
    strides = np.ones(ndim, np.int64)
    for axis in range(ndim - 2, -1, -1):
        strides[axis] = strides[axis + 1] * grid[axis + 1]
    chunk_ids = (coords * strides).sum(axis=1, dtype=np.int64)
    return WindowPlan(chunk_ids, origins, extents, lo - origins, lo - start, hi - lo)


def find(
    index_slots: np.ndarray, index_chunks: np.ndarray, want_slots: np.ndarray,
    want_chunks: np.ndarray,
) -> np.ndarray:
    """Positions of wanted (slot, chunk) pairs in an index sorted by (slot, chunk); -1 if absent."""
    if numpy_path(len(want_slots)):
        return _find_numpy(index_slots, index_chunks, want_slots, want_chunks)
    out = np.empty(len(want_slots), np.int64)
    _kernel("find_chunks")(index_slots, index_chunks, want_slots.astype(np.int64),
                want_chunks.astype(np.int64), out)
    return out


def _find_numpy(index_slots, index_chunks, want_slots, want_chunks) -> np.ndarray:
    """``find_chunks`` in numpy: each slot's run by bisection, then all wanted chunks bisected
    inside their runs at once."""
    if len(index_slots) == 0:
        return np.full(len(want_slots), -1, np.int64)
    lo = np.searchsorted(index_slots, want_slots, "left")
    hi = np.searchsorted(index_slots, want_slots, "right")
    end = hi.copy()
    last = len(index_chunks) - 1
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        right = active & (index_chunks[np.minimum(mid, last)] < want_chunks)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)
    hit = (lo < end) & (index_chunks[np.minimum(lo, last)] == want_chunks)
    return np.where(hit, lo, -1).astype(np.int64)


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
