"""Fill values: which fills each dtype accepts, and that unwritten cells read back as the fill."""

from __future__ import annotations

import math

import numpy as np
import pytest
from core_helpers import ALL_DTYPES, NUMERIC, NUMPY_OF, assert_same, full_like_fill, reopen, sample


def _define(ds, dtype, fill, shape=(4,), chunk_shape=None, name="v"):
    ds.define_array(name, dtype, dims=[f"d{i}" for i in range(len(shape))], shape=list(shape),
                    chunk_shape=chunk_shape, fill_value=fill)


def test_int32_fill_minus_one_reads_back_in_unwritten_cells(store, store_path):
    ds = store.create_dataset("d")
    _define(ds, "int32", -1)
    ds.write_array("v", [0], np.array([10, 20], dtype=np.int32))
    assert_same(ds.read_array("v"), np.array([10, 20, -1, -1], dtype=np.int32))
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("v"), np.array([10, 20, -1, -1], dtype=np.int32))
    assert back.array_fill_value("v") == -1
    assert back.array_meta("v")["fill_value"] == -1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_fill_reads_back_nan(store, store_path, dtype):
    ds = store.create_dataset("d")
    _define(ds, dtype, float("nan"), shape=(5,), chunk_shape=[2])
    ds.write_array("v", [1], np.array([1.5], dtype=dtype))
    expected = np.array([np.nan, 1.5, np.nan, np.nan, np.nan], dtype=dtype)
    assert_same(ds.read_array("v"), expected)
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("v"), expected)
    assert math.isnan(back.array_fill_value("v"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_array_accepts_an_int_fill(store, dtype):
    ds = store.create_dataset("d")
    _define(ds, dtype, 7)
    assert_same(ds.read_array("v"), np.full(4, 7, dtype=dtype))
    fill = ds.array_fill_value("v")
    assert fill == 7.0 and isinstance(fill, float)


def test_uint64_accepts_a_fill_above_int64_max(store, store_path):
    big = 2**64 - 1
    ds = store.create_dataset("d")
    _define(ds, "uint64", big)
    ds.write_array("v", [0], np.array([2**63], dtype=np.uint64))
    expected = np.array([2**63, big, big, big], dtype=np.uint64)
    assert_same(ds.read_array("v"), expected)
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("v"), expected)
    assert back.array_fill_value("v") == big


@pytest.mark.parametrize(
    ("dtype", "fill", "error"),
    [("int32", 1.5, TypeError), ("int64", 2.0, TypeError), ("uint8", np.float32(1), TypeError),
     ("uint32", -1, OverflowError), ("uint8", 256, OverflowError), ("int8", 200, OverflowError),
     ("int8", -129, OverflowError), ("int64", 2**63, OverflowError),
     ("uint64", 2**64, OverflowError), ("float32", 1e300, OverflowError),
     ("float64", "1.0", TypeError), ("float64", True, TypeError), ("float32", False, TypeError),
     ("int32", True, TypeError), ("string", 1, TypeError), ("string", b"x", TypeError),
     ("string", 1.5, TypeError), ("timestamp_nanoseconds", True, TypeError),
     ("timestamp_nanoseconds", "not a date", TypeError), ("int16", [1], TypeError)],
)
def test_fill_values_that_do_not_fit_the_dtype_are_rejected(store, dtype, fill, error):
    ds = store.create_dataset("d")
    with pytest.raises(error, match="'v' in dataset 'd'"):
        _define(ds, dtype, fill)
    assert ds.list_arrays() == []  # a rejected definition leaves nothing behind


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [("int8", -128), ("int8", 127), ("uint8", 255), ("int64", -(2**63)), ("int64", 2**63 - 1),
     ("int32", np.int32(-5)), ("uint16", np.uint64(9)), ("float32", np.float32(2.5)),
     ("float64", np.float64(-0.25)), ("float32", float("inf")), ("float64", -float("inf"))],
)
def test_fills_at_the_edges_of_the_range_are_accepted(store, store_path, dtype, fill):
    ds = store.create_dataset("d")
    _define(ds, dtype, fill)
    expected = np.full(4, fill, dtype=dtype)
    assert_same(ds.read_array("v"), expected)
    store.flush()
    assert_same(reopen(store_path).open_dataset("d").read_array("v"), expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_without_a_fill_unwritten_cells_read_as_zero_empty_string_or_nat(store, store_path, rng,
                                                                          dtype):
    ds = store.create_dataset("d")
    _define(ds, dtype, None, shape=(5, 6), chunk_shape=[2, 4])
    assert ds.array_fill_value("v") is None
    expected = full_like_fill(dtype, (5, 6))
    assert_same(ds.read_array("v"), expected)
    part = sample(dtype, (2, 3), rng)
    ds.write_array("v", [1, 2], part)  # touches four chunks, none of them whole
    expected[1:3, 2:5] = part
    assert_same(ds.read_array("v"), expected)
    store.flush()
    assert_same(reopen(store_path).open_dataset("d").read_array("v"), expected)


@pytest.mark.parametrize(
    ("dtype", "fill", "user_fill"),
    [("string", "n/a", "n/a"), ("string", np.str_("missing"), "missing"),
     ("timestamp_nanoseconds", np.datetime64("2000-01-01", "ns"),
      np.datetime64("2000-01-01", "ns")),
     ("timestamp_nanoseconds", "1999-12-31T12:00", np.datetime64("1999-12-31T12:00", "ns")),
     ("timestamp_nanoseconds", 0, np.datetime64(0, "ns"))]
    + [(d, 3, 3) for d in NUMERIC],
)
def test_declared_fill_is_read_back_in_unwritten_cells_of_every_dtype(store, store_path, rng,
                                                                       dtype, fill, user_fill):
    ds = store.create_dataset("d")
    _define(ds, dtype, fill, shape=(3, 5), chunk_shape=[2, 2])
    expected = full_like_fill(dtype, (3, 5), user_fill)
    assert_same(ds.read_array("v"), expected)
    part = sample(dtype, (2, 2), rng)
    ds.write_array("v", [1, 1], part)
    expected[1:3, 1:3] = part
    assert_same(ds.read_array("v"), expected)
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("v"), expected)
    got = back.array_fill_value("v")
    assert got == user_fill
    if dtype in NUMERIC:  # a plain Python scalar of the dtype's kind
        assert type(got) is type(np.zeros(1, dtype)[0].item())
    else:
        assert type(got) is type(user_fill) or dtype == "string" and type(got) is str


def test_string_fill_is_used_for_unwritten_cells_not_the_empty_string(store):
    ds = store.create_dataset("d")
    _define(ds, "string", "?", shape=(3,), chunk_shape=[1])
    ds.write_array("v", [1], np.array([""], dtype=object))
    assert_same(ds.read_array("v"), np.array(["?", "", "?"], dtype=object))


def test_fill_of_zero_d_arrays_is_read_back(store):
    ds = store.create_dataset("d")
    for dtype in NUMERIC:
        ds.define_array(f"a_{dtype}", dtype, dims=[], shape=[], fill_value=1)
        assert_same(ds.read_array(f"a_{dtype}"), np.array(1, dtype=NUMPY_OF[dtype]))
    ds.define_array("s", "string", dims=[], shape=[], fill_value="none")
    assert_same(ds.read_array("s"), np.array("none", dtype=object))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fills_of_minus_and_plus_zero_stay_apart(store, store_path, dtype):
    # -0.0 == 0.0: two definitions that differ only there were taken for one, and the second
    # dataset's unwritten cells read -0.0
    store.create_dataset("neg").define_array("v", dtype, ["x"], [3], fill_value=-0.0)
    store.create_dataset("pos").define_array("v", dtype, ["x"], [3], fill_value=0.0)
    store.flush()
    for handle in (store, reopen(store_path)):
        for name, negative in (("neg", True), ("pos", False)):
            view = handle.open_dataset(name)
            assert math.copysign(1, view.array_fill_value("v")) == (-1 if negative else 1)
            assert np.signbit(view.read_array("v")).tolist() == [negative] * 3
