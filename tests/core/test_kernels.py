"""The Numba kernels (through their drivers in atlas.kernels) and the read planner against
plain-numpy references, for every dtype, edge chunks, NaN fills and 0-D."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from core_helpers import NUMERIC

from atlas import kernels
from atlas.core._index import ChunkIndex
from atlas.core._read import chunk_plan
from atlas.dtypes import resolve_dtype
from atlas.format.schema import Schema
from atlas.kernels import _jit

# what the kernels see: the ten numerics, timestamps as their int64 storage and as datetime64
KERNEL_DTYPES = NUMERIC + ["timestamp_int64", "datetime64[ns]"]


def _np_dtype(name: str) -> np.dtype:
    return np.dtype("int64") if name == "timestamp_int64" else np.dtype(name)


def _random(dtype: np.dtype, shape, rng) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "f":
        return np.asarray(rng.standard_normal(shape) * 100).astype(dtype)
    return rng.integers(-(2**62), 2**62, size=shape, dtype=np.int64).view(dtype)


def _random_box_case(rng, ndim):
    """Two region shapes and a box that fits in both, with a start in each."""
    box = tuple(int(rng.integers(0, 4)) for _ in range(ndim))
    src_shape = tuple(b + int(rng.integers(0, 4)) for b in box)
    dst_shape = tuple(b + int(rng.integers(0, 4)) for b in box)
    src_start = tuple(int(rng.integers(0, s - b + 1)) for s, b in zip(src_shape, box))
    dst_start = tuple(int(rng.integers(0, s - b + 1)) for s, b in zip(dst_shape, box))
    return box, src_shape, dst_shape, src_start, dst_start


def _window(start, box):
    return tuple(slice(s, s + b) for s, b in zip(start, box))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES + ["object"])
@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
def test_copy_window_equals_numpy_slice_assignment(dtype, ndim):
    rng = np.random.default_rng(ndim)
    dt = np.dtype(object) if dtype == "object" else _np_dtype(dtype)
    for _ in range(12):
        box, src_shape, dst_shape, src_start, dst_start = _random_box_case(rng, ndim)
        if dt.kind == "O":
            src = np.array([f"s{i}" for i in range(math.prod(src_shape))],
                           dtype=object).reshape(src_shape)
            dst = np.full(dst_shape, "", dtype=object)
        else:
            src = _random(dt, src_shape, rng)
            dst = _random(dt, dst_shape, rng)
        expected = dst.copy()
        expected[_window(dst_start, box)] = src[_window(src_start, box)]
        before = src.copy()
        kernels.copy_window(src, src_start, dst, dst_start, box)
        np.testing.assert_array_equal(dst, expected)
        np.testing.assert_array_equal(src, before)  # the source is never touched


def _fill_one(dst: np.ndarray, start, box, value) -> None:
    """Fill one box of ``dst`` through ``fill_regions`` (dst is one region of a flat buffer)."""
    ndim = dst.ndim
    kernels.fill_regions(_flat(dst), np.zeros(1, np.int64),
                         np.array([dst.shape], np.int64).reshape(1, ndim),
                         np.array([start], np.int64).reshape(1, ndim),
                         np.array([box], np.int64).reshape(1, ndim), np.asarray(value, dst.dtype))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("ndim", [0, 1, 2, 3])
def test_fill_regions_equals_numpy_slice_fill(dtype, ndim):
    rng = np.random.default_rng(10 + ndim)
    dt = _np_dtype(dtype)
    values = list(_random(dt, (2,), rng))
    if dt.kind == "f":
        values.append(dt.type("nan"))
    if dt.kind == "M":
        values.append(np.datetime64("NaT", "ns"))
    for value, _ in itertools.product(values, range(5)):
        box, shape, _, start, _ = _random_box_case(rng, ndim)
        dst = _random(dt, shape, rng)
        expected = dst.copy()
        expected[_window(start, box)] = value
        _fill_one(dst, start, box, value)
        np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize("ndim", [0, 1, 3])
def test_fill_regions_of_many_boxes_in_one_call_equals_numpy(ndim):
    """One box is a numpy assignment; more go through the compiled loop: the same result."""
    rng = np.random.default_rng(40 + ndim)
    dt = np.dtype("float32")
    cases = [_random_box_case(rng, ndim) for _ in range(9)]
    dsts = [_random(dt, shape, rng) for _box, shape, _s, _start, _d in cases]
    buffer = np.concatenate([_flat(a) for a in dsts])
    offsets = np.cumsum([0] + [a.nbytes for a in dsts[:-1]]).astype(np.int64)
    table = lambda rows: np.array(rows, np.int64).reshape(len(cases), ndim)
    kernels.fill_regions(buffer, offsets, table([a.shape for a in dsts]),
                         table([c[3] for c in cases]), table([c[0] for c in cases]),
                         np.asarray(-2.5, dt))
    for dst, (box, _shape, _s, start, _d), offset in zip(dsts, cases, offsets.tolist()):
        want = dst.copy()
        want[_window(start, box)] = -2.5
        got = buffer[offset : offset + dst.nbytes].view(dt).reshape(dst.shape)
        np.testing.assert_array_equal(got, want)


def test_fill_regions_writes_a_nan_pattern_over_long_runs():
    dst = np.zeros((3, 1000), np.float32)
    _fill_one(dst, (1, 3), (2, 997), np.float32("nan"))
    assert np.isnan(dst[1:, 3:]).all() and (dst[0] == 0).all() and (dst[:, :3] == 0).all()


def test_copy_window_refuses_mixed_dtypes_and_boxes_outside_the_region():
    with pytest.raises(TypeError):
        kernels.copy_window(np.zeros(4, np.int32), [0], np.zeros(4, np.int64), [0], [2])
    with pytest.raises(IndexError):  # bounds-checked instead of corrupting memory
        kernels.copy_window(np.zeros(4, np.int32), [3], np.zeros(4, np.int32), [0], [2])
    with pytest.raises(IndexError):
        kernels.copy_window(np.zeros(4, np.int32), [0], np.zeros(4, np.int32), [3], [2])
    with pytest.raises(IndexError):
        _fill_one(np.zeros((2, 2), np.int8), [1, 1], [2, 1], 1)
    with pytest.raises(IndexError):  # numpy would clip a negative start silently
        _fill_one(np.zeros(4, np.int8), [-1], [2], 1)


def test_copy_window_works_on_strided_views():
    src = np.arange(16.0).reshape(4, 4)[:, ::2]
    dst = np.zeros((4, 6))[::2, 1:]
    kernels.copy_window(src, [1, 0], dst, [0, 1], [2, 2])
    np.testing.assert_array_equal(dst[:, 1:3], src[1:3, :])


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).view(np.uint8)


def _kernel_copy(cases, dtype):
    """Copy every (src, src_start, dst, dst_start, box) case with ONE ``scatter_boxes`` call over
    two flat buffers that hold all sources and all destinations back to back."""
    ndim = cases[0][0].ndim
    srcs, dsts = [c[0] for c in cases], [c[2] for c in cases]
    src_buf = np.concatenate([_flat(a) for a in srcs]) if srcs else np.zeros(0, np.uint8)
    dst_buf = np.concatenate([_flat(a) for a in dsts])
    offsets = lambda arrays: np.cumsum([0] + [a.nbytes for a in arrays[:-1]]).astype(np.int64)
    table = lambda rows: np.array(rows, np.int64).reshape(len(cases), ndim)
    kernels.scatter_boxes(src_buf, offsets(srcs), table([a.shape for a in srcs]),
                          table([c[1] for c in cases]), dst_buf, offsets(dsts),
                          table([a.shape for a in dsts]), table([c[3] for c in cases]),
                          table([c[4] for c in cases]), dtype.itemsize)
    out, at = [], 0
    for a in dsts:
        out.append(dst_buf[at:at + a.nbytes].view(dtype).reshape(a.shape))
        at += a.nbytes
    return out


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
def test_scatter_boxes_equals_numpy_slice_assignment(dtype, ndim):
    rng = np.random.default_rng(200 + ndim)
    dt = _np_dtype(dtype)
    cases = []
    for _ in range(12):
        box, src_shape, dst_shape, src_start, dst_start = _random_box_case(rng, ndim)
        cases.append((_random(dt, src_shape, rng), src_start, _random(dt, dst_shape, rng),
                      dst_start, box))
    expected = []
    for src, src_start, dst, dst_start, box in cases:
        want = dst.copy()
        want[_window(dst_start, box)] = src[_window(src_start, box)]
        expected.append(want)
    for got, want in zip(_kernel_copy(cases, dt), expected):
        np.testing.assert_array_equal(got, want)
    for case, want in zip(cases, expected):  # one box per call: numpy's copy, not the loop
        np.testing.assert_array_equal(_kernel_copy([case], dt)[0], want)


@pytest.mark.parametrize("rows", ["slices", "index arrays"])
def test_a_prepared_box_scatter_copies_any_rows_in_parts_like_numpy(rows):
    """BoxScatter checks and folds the tables once; a read then runs it a block at a time."""
    rng = np.random.default_rng(7)
    dt = np.dtype("float64")
    cases = [(_random(dt, src_shape, rng), src_start, _random(dt, dst_shape, rng), dst_start,
              box) for box, src_shape, dst_shape, src_start, dst_start in
             (_random_box_case(rng, 3) for _ in range(12))]
    srcs, dsts = [c[0] for c in cases], [c[2] for c in cases]
    src_buf = np.concatenate([_flat(a) for a in srcs])
    dst_buf = np.concatenate([_flat(a) for a in dsts])
    offsets = lambda arrays: np.cumsum([0] + [a.nbytes for a in arrays[:-1]]).astype(np.int64)
    table = lambda values: np.array(values, np.int64).reshape(len(cases), 3)
    prepared = kernels.BoxScatter(offsets(srcs), table([a.shape for a in srcs]),
                                  table([c[1] for c in cases]), offsets(dsts),
                                  table([a.shape for a in dsts]), table([c[3] for c in cases]),
                                  table([c[4] for c in cases]), dt.itemsize)
    parts = [slice(0, 1), slice(1, 5), slice(5, 12)] if rows == "slices" else [
        np.array([11, 0, 3]), np.array([9]), np.array([1, 2, 4, 5, 6, 7, 8, 10])]
    for part in parts:
        prepared.run(src_buf, dst_buf, part)
    at = 0
    for src, src_start, dst, dst_start, box in cases:
        want = dst.copy()
        want[_window(dst_start, box)] = src[_window(src_start, box)]
        got = dst_buf[at:at + dst.nbytes].view(dt).reshape(dst.shape)
        np.testing.assert_array_equal(got, want)
        at += dst.nbytes


def test_scatter_and_fill_refuse_boxes_outside_their_region_or_buffer():
    one = np.ones((1, 1), np.int64)
    with pytest.raises(IndexError):  # bounds-checked instead of corrupting memory
        kernels.scatter_boxes(np.zeros(8, np.uint8), np.zeros(1, np.int64), one * 8, one * 4,
                              np.zeros(8, np.uint8), np.zeros(1, np.int64), one * 8, one * 0,
                              one * 8, 1)
    for offset, shape in ((1, 8), (-1, 2)):  # one box, its region outside the buffer
        with pytest.raises(IndexError):
            kernels.scatter_boxes(np.zeros(8, np.uint8), np.full(1, offset, np.int64),
                                  one * shape, one * 0, np.zeros(8, np.uint8),
                                  np.zeros(1, np.int64), one * 8, one * 0, one * 2, 1)
        with pytest.raises(IndexError):
            kernels.scatter_boxes(np.zeros(8, np.uint8), np.zeros(1, np.int64), one * 8,
                                  one * 0, np.zeros(8, np.uint8), np.full(1, offset, np.int64),
                                  one * shape, one * 0, one * 2, 1)
    with pytest.raises(IndexError):
        kernels.fill_regions(np.zeros(8, np.uint8), np.ones(1, np.int64), one * 8, one * 0,
                             one * 8, np.zeros(1, np.uint8))
    with pytest.raises(IndexError):
        kernels.scatter_runs(np.zeros(8, np.uint8), [4], np.zeros(8, np.uint8), [0], [5])
    with pytest.raises(IndexError):
        kernels.scatter_runs(np.zeros(8, np.uint8), [0], np.zeros(8, np.uint8), [-1], [2])


def test_scatter_runs_copies_byte_runs_like_slice_assignment():
    rng = np.random.default_rng(5)
    src = rng.integers(0, 255, 4096, dtype=np.uint8)
    dst = np.zeros(4096, np.uint8)
    want = dst.copy()
    lengths = rng.integers(0, 64, 50)
    src_offsets = rng.integers(0, 4096 - 64, 50)
    dst_offsets = np.arange(50) * 80  # disjoint destinations
    for s0, d0, n in zip(src_offsets, dst_offsets, lengths):
        want[d0 : d0 + n] = src[s0 : s0 + n]
    kernels.scatter_runs(src, src_offsets, dst, dst_offsets, lengths)
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("count", [1, 2, 7])
def test_scatter_runs_back_to_back_are_one_checked_copy(count):
    """Runs that follow each other on both sides are one copy (no compiled loop): the same
    bytes as run by run, the same bounds checks, and memmove's answer when the buffers are
    one."""
    rng = np.random.default_rng(count)
    src = rng.integers(0, 255, 512, dtype=np.uint8)
    lengths = rng.integers(1, 40, count)
    src_offsets = 13 + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    dst_offsets = src_offsets + 50
    dst = np.zeros(512, np.uint8)
    kernels.scatter_runs(src, src_offsets, dst, dst_offsets, lengths)
    want = np.zeros(512, np.uint8)
    want[63 : 63 + lengths.sum()] = src[13 : 13 + lengths.sum()]
    np.testing.assert_array_equal(dst, want)
    same = src.copy()  # overlapping source and destination in one buffer
    kernels.scatter_runs(same, src_offsets, same, dst_offsets, lengths)
    expected = src.copy()
    expected[63 : 63 + lengths.sum()] = src[13 : 13 + lengths.sum()]
    np.testing.assert_array_equal(same, expected)
    with pytest.raises(IndexError):  # the last run ends beyond dst
        kernels.scatter_runs(src, src_offsets, np.zeros(62 + int(lengths.sum()), np.uint8),
                             dst_offsets, lengths)
    with pytest.raises(IndexError):  # a negative length, even where the offsets line up
        kernels.scatter_runs(src, [0, 8], dst, [0, 8], [8, -1])


def _plan_reference(shape, chunk_shape, start, window):
    """Every chunk the window overlaps, in C order, with its overlap computed by hand."""
    ranges = [range(s // c, (s + w - 1) // c + 1) if w else range(0)
              for s, w, c in zip(start, window, chunk_shape)]
    grid = tuple(-(-n // c) for n, c in zip(shape, chunk_shape))
    rows = []
    for coords in itertools.product(*ranges):
        origin = [k * c for k, c in zip(coords, chunk_shape)]
        extent = [min(c, n - o) for c, n, o in zip(chunk_shape, shape, origin)]
        lo = [max(s, o) for s, o in zip(start, origin)]
        hi = [min(s + w, o + e) for s, w, o, e in zip(start, window, origin, extent)]
        rows.append((int(np.ravel_multi_index(coords, grid)) if coords else 0, origin, extent,
                     [a - o for a, o in zip(lo, origin)], [a - s for a, s in zip(lo, start)],
                     [b - a for a, b in zip(lo, hi)]))
    return rows


def _plan(shape, chunk_shape, start, window):
    schema = Schema(resolve_dtype("float64"), tuple(f"d{i}" for i in range(len(shape))),
                    tuple(shape), tuple(chunk_shape), None)
    return chunk_plan(schema, tuple(start), tuple(window))


def _origins(plan, shape, chunk_shape):
    grid = tuple(-(-n // c) for n, c in zip(shape, chunk_shape))
    coords = np.array(np.unravel_index(plan.chunk_ids, grid)).T.reshape(-1, len(shape))
    return coords * np.array(chunk_shape, np.int64)


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_chunk_plan_lists_every_overlapped_chunk_like_a_brute_force_walk(ndim):
    rng = np.random.default_rng(100 + ndim)
    for _ in range(40):
        chunk_shape = [int(rng.integers(1, 5)) for _ in range(ndim)]
        shape = [int(rng.integers(1, 12)) for _ in range(ndim)]  # often not chunk multiples
        start = [int(rng.integers(0, n)) for n in shape]
        window = [int(rng.integers(1, n - s + 1)) for n, s in zip(shape, start)]
        plan = _plan(shape, chunk_shape, start, window)
        expected = _plan_reference(shape, chunk_shape, start, window)
        assert plan.chunk_ids.tolist() == [r[0] for r in expected]
        origins = _origins(plan, shape, chunk_shape)
        for k, (_, origin, extent, src, dst, box) in enumerate(expected):
            assert origins[k].tolist() == origin
            assert plan.extents[k].tolist() == extent  # edge chunks are clipped
            assert plan.src_starts[k].tolist() == src
            assert plan.dst_starts[k].tolist() == dst
            assert plan.boxes[k].tolist() == box
        assert plan.boxes.prod(axis=1).sum() == math.prod(window)  # the boxes tile the window


def test_chunk_plan_scatters_chunks_back_into_the_window():
    rng = np.random.default_rng(7)
    array = rng.standard_normal((13, 9))
    shape, chunk_shape, start, window = (13, 9), (5, 4), (3, 2), (9, 6)
    plan = _plan(shape, chunk_shape, start, window)
    origins = _origins(plan, shape, chunk_shape)
    out = np.full(window, np.nan)
    for k in range(len(plan.chunk_ids)):
        chunk = np.ascontiguousarray(array[_window(origins[k], plan.extents[k])])
        kernels.copy_window(chunk, plan.src_starts[k], out, plan.dst_starts[k], plan.boxes[k])
    np.testing.assert_array_equal(out, array[3:12, 2:8])


def test_chunk_plan_of_zero_d_and_empty_windows():
    plan = _plan((), (), (), ())
    assert plan.chunk_ids.tolist() == [0] and plan.boxes.shape == (1, 0)
    empty = _plan((4, 4), (2, 2), (1, 1), (0, 3))
    assert len(empty.chunk_ids) == 0 and empty.boxes.shape == (0, 2)


def test_copy_window_and_fill_regions_handle_zero_d_arrays():
    for dt in (np.int8, np.uint64, np.float32, np.dtype("M8[ns]")):
        src = np.array(5, dtype=dt)
        dst = np.array(0, dtype=dt)
        kernels.copy_window(src, (), dst, (), ())
        assert dst[()] == src[()]
        _fill_one(dst, (), (), np.array(9, dtype=dt)[()])
        assert dst[()] == np.array(9, dtype=dt)[()]


def _index_of(slots, chunks) -> ChunkIndex:
    index = ChunkIndex.empty()
    index.slot, index.chunk = slots, chunks
    return index


def test_find_locates_wanted_pairs_like_a_dictionary_lookup():
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 50, 500):
        pairs = {(int(s), int(c)) for s, c in rng.integers(0, 30, size=(n, 2))}
        index = sorted(pairs)
        slots = np.array([p[0] for p in index], np.int64)
        chunks = np.array([p[1] for p in index], np.int64)
        want = rng.integers(-1, 32, size=(200, 2))
        got = _index_of(slots, chunks).find(want[:, 0], want[:, 1])
        position = {p: i for i, p in enumerate(index)}
        assert got.tolist() == [position.get((int(s), int(c)), -1) for s, c in want]


def _null_rule(dtype: str) -> int:
    """What besides the fill marks a null in ``dtype``: NaN, NaT, or nothing."""
    if dtype == "timestamp_int64":
        return kernels.NULL_NAT
    return kernels.NULL_NAN if _np_dtype(dtype).kind == "f" else kernels.NULL_NONE


def _stats_reference(values, written, fill, has_fill, rule):
    flat = values.reshape(-1)
    null = np.zeros(flat.size, bool) if written is None else written.reshape(-1) == 0
    if rule == kernels.NULL_NAN:
        null |= np.isnan(flat)
    if rule == kernels.NULL_NAT:
        null |= flat == np.iinfo(np.int64).min
    if has_fill:
        null |= flat == fill
    good = flat[~null]
    return (int(null.sum()), int(good.size), good.min() if good.size else None,
            good.max() if good.size else None)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES[:-1])
@pytest.mark.parametrize("ndim", [0, 1, 2, 3])
def test_chunk_partial_matches_numpy_for_every_dtype_and_mask(dtype, ndim):
    rng = np.random.default_rng(ndim)
    dt = _np_dtype(dtype)
    rule = _null_rule(dtype)
    for trial in range(8):
        shape = tuple(int(rng.integers(1, 5)) for _ in range(ndim))
        pool = _random(dt, (3,), rng)
        values = np.array(pool[rng.integers(0, 3, size=shape)])
        if rule == kernels.NULL_NAN:
            values[rng.random(shape) < 0.3] = np.nan
        if rule == kernels.NULL_NAT:
            values[rng.random(shape) < 0.3] = np.iinfo(np.int64).min
        written = None if trial % 2 else (rng.random(shape) < 0.7).astype(np.uint8)
        has_fill = trial % 4 < 2
        fill = pool[0]
        got = kernels.chunk_partial(values, written, fill, has_fill, rule)
        nulls, valid, lo, hi = _stats_reference(values, written, fill, has_fill, rule)
        assert got[:2] == (nulls, valid)
        if valid:
            assert got[2] == lo and got[3] == hi


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunk_partial_with_a_nan_fill_counts_every_nan_once(dtype):
    values = np.array([np.nan, 1, -np.inf, np.nan, 2], dtype=dtype)
    nulls, valid, lo, hi = kernels.chunk_partial(values, None, np.nan, False, kernels.NULL_NAN)
    assert (nulls, valid, lo, hi) == (2, 3, -np.inf, 2)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES[:-1])
def test_chunk_partial_without_mask_or_fill_equals_the_general_loop_bit_for_bit(dtype):
    # no mask and no fill that can match take a loop of their own; a mask of all ones takes
    # the general one: both give the same counts and the same extremes, signed zeros included
    rng = np.random.default_rng(5)
    dt = _np_dtype(dtype)
    rule = _null_rule(dtype)
    pools = [_random(dt, (6,), rng)]
    if dt.kind == "f":  # zeros of both signs as the min, as the max; infinities
        pools += [np.array([0.0, -0.0, 1.0, 2.5], dt), np.array([0.0, -0.0, -1.0], dt),
                  np.array([np.inf, -np.inf, 3.0], dt)]
    for pool, size, trial in itertools.product(pools, (0, 1, 2, 7, 40), range(6)):
        values = np.array(pool[rng.integers(0, len(pool), size=size)])
        if rule == kernels.NULL_NAN and trial % 2:
            values[rng.random(size) < 0.5] = np.nan
        fill = np.nan if dt.kind == "f" else pool[0]
        has_fill = dt.kind == "f"  # a NaN fill matches no cell: the plain loop
        plain = kernels.chunk_partial(values, None, fill, has_fill, rule)
        general = kernels.chunk_partial(values, np.ones(size, np.uint8), fill, has_fill,
                                        rule)
        assert plain[:2] == general[:2] == _stats_reference(values, None, fill, False,
                                                              rule)[:2]
        if plain[1]:
            assert np.array([plain[2], plain[3]], dt).tobytes() == \
                np.array([general[2], general[3]], dt).tobytes()


@pytest.mark.parametrize("dtype", ["int64", "uint64", "float64"])
def test_fold_partials_folds_chunk_partials_like_numpy(dtype):
    rng = np.random.default_rng(11)
    dt = np.dtype(dtype)
    for n in (1, 2, 9):
        nulls = rng.integers(0, 5, size=n).astype(np.int64)
        valids = rng.integers(0, 3, size=n).astype(np.int64)
        mins = _random(dt, (n,), rng)
        maxs = np.maximum(mins, _random(dt, (n,), rng))
        got = kernels.fold_partials(nulls, valids, mins, maxs)
        live = valids > 0
        assert got[:2] == (int(nulls.sum()), int(valids.sum()))
        if live.any():
            assert got[2] == mins[live].min() and got[3] == maxs[live].max()
        else:
            assert got[2:] == (None, None)
    assert kernels.fold_partials(*(np.zeros(0, np.int64),) * 4) == (0, 0, None, None)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES[:-1])
def test_block_partials_equal_one_chunk_partial_per_run(dtype):
    rng = np.random.default_rng(21)
    dt = _np_dtype(dtype)
    rule = _null_rule(dtype)
    pool = _random(dt, (4,), rng)
    values = np.array(pool[rng.integers(0, 4, size=300)])
    if rule == kernels.NULL_NAN:
        values[rng.random(300) < 0.2] = np.nan
    counts = rng.integers(0, 20, size=12)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    fills = _random(dt, (12,), rng)
    fills[::3] = pool[0]
    has = (np.arange(12) % 2).astype(np.uint8)
    got_counts, got_extremes = kernels.block_partials(values, starts, counts, fills, has, rule)
    for i in range(12):
        run = values[starts[i] : starts[i] + counts[i]]
        nulls, valid, lo, hi = _stats_reference(run, None, fills[i], bool(has[i]), rule)
        assert got_counts[i].tolist() == [nulls, valid]
        if valid:
            assert got_extremes[i, 0] == lo and got_extremes[i, 1] == hi
    with pytest.raises(IndexError):
        kernels.block_partials(values, [295], [10], fills[:1], has[:1], rule)


@settings(deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float32", "float64", "int8", "uint16", "int64",
                                               "uint64"]))
def test_block_partials_of_plain_runs_equal_the_general_loop_bit_for_bit(data, dtype):
    """Runs whose only nulls are NaN take the integer-key loop: NaNs, zeros of both signs,
    infinities and the extremes of the dtype give what the general loop (a mask of ones)
    gives, per run, bit for bit."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        special = [np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, 1.5, -1.5,
                   np.finfo(dt).max, np.finfo(dt).min, np.finfo(dt).tiny]
        cell = st.one_of(st.sampled_from(special), st.floats(width=dt.itemsize * 8))
    else:
        cell = st.integers(np.iinfo(dt).min, np.iinfo(dt).max)
    values = np.array(data.draw(st.lists(cell, max_size=200)), dt)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=8)))
    starts = np.array([0] + cuts, np.int64)
    counts = np.diff(np.append(starts, len(values)))
    rule = kernels.NULL_NAN if dt.kind == "f" else kernels.NULL_NONE
    fills = np.zeros(len(starts), dt)
    if dt.kind == "f":
        fills[:] = np.nan  # a NaN fill matches no cell: every run is plain
    got_counts, got_extremes = kernels.block_partials(values, starts, counts, fills,
                                                      np.ones(len(starts), np.uint8)
                                                      if dt.kind == "f" else
                                                      np.zeros(len(starts), np.uint8), rule)
    for i, (start, count) in enumerate(zip(starts.tolist(), counts.tolist())):
        run = values[start : start + count]
        nulls, valid, lo, hi = kernels.chunk_partial(run, np.ones(count, np.uint8), fills[i],
                                                     False, rule)
        assert got_counts[i].tolist() == [nulls, valid]
        if valid:
            assert got_extremes[i].tobytes() == np.array([lo, hi], dt).tobytes()


def test_kernel_decorator_falls_back_to_no_cache_when_caching_is_impossible(monkeypatch):
    import numba

    real = numba.njit
    calls = []

    def njit_without_cache_dir(*args, **options):
        calls.append(options.get("cache", False))
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **options)

    monkeypatch.setattr(numba, "njit", njit_without_cache_dir)

    def add_one(values, out):
        for i in range(values.shape[0]):
            out[i] = values[i] + 1

    compiled = _jit.kernel(add_one)
    out = np.zeros(3, np.int64)
    compiled(np.arange(3, dtype=np.int64), out)
    assert out.tolist() == [1, 2, 3]
    assert calls == [True, False]


@pytest.mark.parametrize("n_bytes", [1, 3, 8, 1 << 10, (1 << 29) // 1024])
def test_bloom_bits_sets_the_probe_sequence_of_every_hash(n_bytes):
    # extreme hashes too: h1 and h2 at 2**32 - 1, where h1 + i h2 passes n_bits many times
    rng = np.random.default_rng(n_bytes)
    hashes = np.concatenate([rng.integers(0, 2**63, 200, dtype=np.uint64) * np.uint64(2),
                             np.array([0, 2**64 - 1, 2**32 - 1, (2**32 - 1) << 32], np.uint64)])
    expected = bytearray(n_bytes)
    m = 8 * n_bytes
    for h in hashes.tolist():
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        for i in range(5):
            p = (h1 + i * h2) % m
            expected[p // 8] |= 1 << (7 - p % 8)
    assert kernels.bloom_bits(hashes, n_bytes, 5).tobytes() == bytes(expected)


def test_bloom_bits_refuses_what_is_no_filter():
    with pytest.raises(ValueError, match="1-D"):
        kernels.bloom_bits(np.zeros((2, 2), np.uint64), 8, 7)
    with pytest.raises(ValueError, match="n_bytes >= 1"):
        kernels.bloom_bits(np.zeros(3, np.uint64), 0, 7)
