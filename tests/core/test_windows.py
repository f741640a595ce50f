"""Windows: reads and writes of any in-bounds window, checked against a numpy model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from core_helpers import ALL_DTYPES, assert_same, full_like_fill, reopen, sample

import atlas

SHAPE = (9, 10)
CHUNKS = [4, 3]


@pytest.fixture
def grid(store, rng):
    """Dataset 'd' with a 9x10 float64 array 'v' (chunks 4x3, NaN fill) and its numpy model."""
    ds = store.create_dataset("d")
    ds.define_array("v", "float64", dims=["y", "x"], shape=list(SHAPE), chunk_shape=CHUNKS,
                    fill_value=float("nan"))
    model = np.full(SHAPE, np.nan)
    return ds, model


WINDOWS = [((0, 0), SHAPE), ((0, 0), (4, 3)), ((4, 3), (4, 3)), ((8, 9), (1, 1)),
           ((1, 1), (2, 1)), ((3, 2), (6, 8)), ((0, 5), (9, 1)), ((2, 0), (1, 10)),
           ((5, 7), (4, 3)), ((0, 0), (0, 4)), ((9, 10), (0, 0))]


@pytest.mark.parametrize(("start", "shape"), WINDOWS)
def test_window_writes_aligned_or_not_match_the_numpy_model(grid, store, store_path, rng,
                                                            start, shape):
    ds, model = grid
    base = rng.standard_normal(SHAPE)
    ds.write_array("v", [0, 0], base)
    model[...] = base
    data = rng.standard_normal(shape)
    ds.write_array("v", list(start), data)
    model[start[0]:start[0] + shape[0], start[1]:start[1] + shape[1]] = data
    assert_same(ds.read_array("v"), model)
    store.flush()
    assert_same(reopen(store_path).open_dataset("d").read_array("v"), model)


@pytest.mark.parametrize(("start", "shape"), WINDOWS)
def test_window_reads_aligned_or_not_match_numpy_slicing(grid, store, store_path, rng, start,
                                                         shape):
    ds, model = grid
    model[2:7, 1:8] = rng.standard_normal((5, 7))  # leaves unwritten chunks and cells
    ds.write_array("v", [2, 1], model[2:7, 1:8].copy())
    expected = model[start[0]:start[0] + shape[0], start[1]:start[1] + shape[1]]
    assert_same(ds.read_array("v", list(start), list(shape)), expected)  # pending
    store.flush()
    assert_same(ds.read_array("v", list(start), list(shape)), expected)  # committed
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("v", list(start), list(shape)), expected)


def test_read_with_start_only_reads_to_the_end(grid, rng):
    ds, model = grid
    model[...] = rng.standard_normal(SHAPE)
    ds.write_array("v", [0, 0], model.copy())
    assert_same(ds.read_array("v", [3, 4]), model[3:, 4:])
    assert_same(ds.read_array("v", shape=[2, 5]), model[:2, :5])
    assert_same(ds.read_array("v", np.array([1, 2]), (np.int64(3), 4)), model[1:4, 2:6])


def test_partial_chunk_writes_merge_with_committed_chunk_content(grid, store, store_path, rng):
    """Read-modify-write: a write covering part of a committed chunk keeps the rest of it."""
    ds, model = grid
    model[...] = rng.standard_normal(SHAPE)
    ds.write_array("v", [0, 0], model.copy())
    store.flush()
    ds = reopen(store_path).open_dataset("d")
    for start in [(1, 1), (3, 2), (6, 8), (0, 9)]:
        piece = rng.standard_normal((2, 1))
        ds.write_array("v", list(start), piece)
        model[start[0]:start[0] + 2, start[1]:start[1] + 1] = piece
        assert_same(ds.read_array("v"), model)
    ds.store.flush()
    assert_same(reopen(store_path).open_dataset("d").read_array("v"), model)


def test_overlapping_writes_keep_the_latest_value_per_cell(grid, store, store_path, rng):
    ds, model = grid
    writes = [((0, 0), (9, 10)), ((2, 2), (5, 5)), ((1, 0), (3, 8)), ((4, 4), (5, 6)),
              ((3, 3), (1, 1)), ((0, 0), (4, 3)), ((2, 2), (5, 5))]
    for i, (start, shape) in enumerate(writes):
        data = rng.standard_normal(shape)
        ds.write_array("v", list(start), data)
        model[start[0]:start[0] + shape[0], start[1]:start[1] + shape[1]] = data
        if i == 3:
            store.flush()  # some layers committed, some pending
    assert_same(ds.read_array("v"), model)
    store.flush()
    assert_same(reopen(store_path).open_dataset("d").read_array("v"), model)


def test_reads_see_pending_writes_over_committed_data_before_flush(grid, store, store_path):
    ds, model = grid
    ds.write_array("v", [0, 0], np.zeros(SHAPE))
    store.flush()
    ds.write_array("v", [2, 2], np.ones((3, 3)))
    model[...] = 0
    model[2:5, 2:5] = 1
    assert_same(ds.read_array("v"), model)
    assert_same(reopen(store_path).open_dataset("d").read_array("v"), np.zeros(SHAPE))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_three_d_unaligned_windows_round_trip_for_every_dtype(store, store_path, rng, dtype):
    shape, chunks = (5, 4, 6), [2, 3, 4]
    ds = store.create_dataset("d")
    ds.define_array("v", dtype, dims=["a", "b", "c"], shape=list(shape), chunk_shape=chunks)
    model = full_like_fill(dtype, shape)
    for start, size in [((1, 0, 2), (3, 4, 3)), ((0, 1, 0), (2, 2, 6)), ((4, 3, 5), (1, 1, 1))]:
        data = sample(dtype, size, rng)
        ds.write_array("v", list(start), data)
        model[tuple(slice(s, s + n) for s, n in zip(start, size))] = data
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("v"), model)
    for start in itertools.product([0, 1, 3], [0, 2], [1, 5]):
        size = tuple(min(2, n - s) for s, n in zip(start, shape))
        window = tuple(slice(s, s + n) for s, n in zip(start, size))
        assert_same(back.read_array("v", list(start), list(size)), model[window])


def test_chunk_shape_larger_than_the_array_and_unit_chunks_work(store, rng):
    ds = store.create_dataset("d")
    ds.define_array("big", "int16", dims=["x", "y"], shape=[3, 4], chunk_shape=[10, 10])
    ds.define_array("unit", "int16", dims=["x", "y"], shape=[3, 4], chunk_shape=[1, 1])
    data = sample("int16", (3, 4), rng)
    for name in ("big", "unit"):
        ds.write_array(name, [0, 0], data)
        ds.write_array(name, [1, 1], data[:2, :3] * 0)
    expected = data.copy()
    expected[1:3, 1:4] = 0
    store.flush()
    for name in ("big", "unit"):
        assert_same(ds.read_array(name), expected)


def test_non_contiguous_input_arrays_are_written_by_value(store, rng):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", dims=["x", "y"], shape=[6, 5], chunk_shape=[4, 2])
    base = sample("int32", (10, 12), rng)
    strided = base[::2, 1:11:2]  # (5, 5), neither C nor F contiguous
    ds.write_array("v", [1, 0], strided)
    expected = np.zeros((6, 5), np.int32)
    expected[1:6] = strided
    assert_same(ds.read_array("v"), expected)
    fortran = np.asfortranarray(sample("int32", (6, 5), rng))
    ds.write_array("v", [0, 0], fortran)
    assert_same(ds.read_array("v"), np.ascontiguousarray(fortran))
    transposed = sample("int32", (5, 6), rng).T
    ds.write_array("v", [0, 0], transposed)
    assert_same(ds.read_array("v"), np.ascontiguousarray(transposed))


@pytest.mark.parametrize(
    ("start", "shape", "axis"),
    [((0, 8), (9, 3), 1), ((6, 0), (4, 10), 0), ((-1, 0), (2, 2), 0), ((0, -2), (2, 2), 1),
     ((9, 0), (1, 1), 0), ((0, 10), (1, 1), 1)],
)
def test_out_of_bounds_writes_raise_index_error_naming_axis_array_and_dataset(grid, start, shape,
                                                                             axis):
    ds, model = grid
    with pytest.raises(atlas.OutOfBoundsError) as info:
        ds.write_array("v", list(start), np.ones(shape))
    assert isinstance(info.value, IndexError)
    message = str(info.value)
    assert f"axis {axis}" in message and "'v'" in message and "'d'" in message, message
    # a negative start is named as such (it read as exceeding the shape)
    assert ("is negative" in message) == (min(start) < 0), message
    assert_same(ds.read_array("v"), model)  # nothing was written


@pytest.mark.parametrize(
    ("start", "shape", "axis"),
    [((0, 8), (9, 3), 1), ((6, 0), (4, 10), 0), ((-1, 0), (2, 2), 0), ((0, -1), None, 1),
     ((10, 0), None, 0), ((0, 11), None, 1), ((9, 10), (1, 0), 0)],
)
def test_out_of_bounds_reads_raise_index_error_naming_axis_array_and_dataset(grid, start, shape,
                                                                            axis):
    ds, _ = grid
    with pytest.raises(IndexError) as info:
        ds.read_array("v", list(start), None if shape is None else list(shape))
    assert isinstance(info.value, atlas.OutOfBoundsError)
    message = str(info.value)
    assert f"axis {axis}" in message and "'v'" in message and "'d'" in message, message


@pytest.mark.parametrize(
    ("start", "shape"),
    [([0], None), ([0, 0, 0], None), ([0, 0], [1]), ([0, 0], [1, 1, 1]), ([], None)],
)
def test_start_or_shape_of_the_wrong_rank_raise_value_error_on_read(grid, start, shape):
    ds, _ = grid
    with pytest.raises(ValueError, match="rank"):
        ds.read_array("v", start, shape)


def test_write_of_the_wrong_rank_raises_value_error(grid):
    ds, model = grid
    with pytest.raises(ValueError, match="rank"):
        ds.write_array("v", [0], np.ones((2, 2)))
    with pytest.raises(ValueError, match="rank"):
        ds.write_array("v", [0, 0], np.ones(3))
    with pytest.raises(ValueError, match="rank"):
        ds.write_array("v", [0, 0, 0], np.ones((1, 1, 1)))
    assert_same(ds.read_array("v"), model)


def test_negative_read_shape_raises_value_error(grid):
    ds, _ = grid
    with pytest.raises(ValueError):
        ds.read_array("v", [0, 0], [2, -1])


@pytest.mark.parametrize("bad", [[0.5, 0], ["0", 0], [True, 0], 3, None])
def test_non_integer_starts_raise_type_error(grid, bad):
    ds, _ = grid
    with pytest.raises(TypeError):
        ds.write_array("v", bad, np.ones((1, 1)))


def test_zero_size_windows_read_as_empty_arrays_of_the_dtype(grid, store):
    ds, _ = grid
    out = ds.read_array("v", [3, 3], [0, 5])
    assert out.shape == (0, 5) and out.dtype == np.float64
    ds.write_array("v", [3, 3], np.ones((0, 5)))  # a no-op, not an error
    ds.define_array("empty", "int8", dims=["x"], shape=[0])
    assert_same(ds.read_array("empty"), np.zeros(0, np.int8))


def test_read_arrays_returns_every_named_array_and_none_for_missing(store, rng):
    ds = store.create_dataset("d")
    a = sample("int64", (4, 4), rng)
    b = sample("string", (4, 4), rng)
    ds.define_array("a", "int64", dims=["x", "y"], shape=[4, 4], chunk_shape=[3, 3])
    ds.define_array("b", "string", dims=["x", "y"], shape=[4, 4], chunk_shape=[3, 3])
    ds.write_array("a", [0, 0], a)
    ds.write_array("b", [0, 0], b)
    got = ds.read_arrays(["a", "b", "missing"], [1, 1], [2, 3])
    assert list(got) == ["a", "b", "missing"]
    assert_same(got["a"], a[1:3, 1:4])
    assert_same(got["b"], b[1:3, 1:4])
    assert got["missing"] is None
    full = ds.read_arrays(["a"])
    assert_same(full["a"], a)


def test_missing_arrays_read_as_none_but_cannot_be_written(store):
    ds = store.create_dataset("d")
    assert ds.read_array("nope") is None
    assert ds.array_meta("nope") is None
    assert ds.array_stats("nope") is None
    with pytest.raises(KeyError, match="nope"):
        ds.write_array("nope", [0], np.ones(1))
    with pytest.raises(KeyError, match="nope"):
        ds.array_fill_value("nope")


@pytest.mark.parametrize("start", [[0.0], [None], [""], [False]])
@pytest.mark.parametrize("chunks", [None, [2]])  # one chunk (the fast whole write), two
def test_a_start_that_is_not_ints_is_refused_whatever_the_chunks(store, start, chunks):
    view = store.create_dataset("d")
    view.define_array("v", "float64", ["x"], [4], chunks)
    with pytest.raises(TypeError, match="start must hold ints"):
        view.write_array("v", start, np.ones(4))
    assert not view.read_array("v").any()  # nothing written
