"""array_stats: row_count, null_count, min, max with the semantics of spec/UPSTREAM.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
from core_helpers import FLOATS, INTS, NUMERIC, UINTS, reopen, sample


def _stats_after_flush(store, ds, name):
    store.flush()
    return ds.array_stats(name)


def _reference(model: np.ndarray, written: np.ndarray, fill) -> dict:
    """Plain-numpy stats: nulls are unwritten cells, fill-equal cells and NaN/NaT."""
    flat, mask = model.reshape(-1), written.reshape(-1)
    null = ~mask
    if model.dtype.kind == "f":
        null |= np.isnan(flat)
    if model.dtype.kind == "M":
        null |= np.isnat(flat)
    if fill is not None and not (isinstance(fill, float) and math.isnan(fill)):
        null |= flat == fill
    data = flat[~null]
    if model.dtype == object:
        lo, hi = (min(data), max(data)) if data.size else (None, None)
    else:
        lo, hi = (data.min(), data.max()) if data.size else (None, None)
    return {"row_count": flat.size, "null_count": int(null.sum()), "min": lo, "max": hi}


def test_int32_fill_minus_one_example_from_the_original(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", dims=["x"], shape=[6], fill_value=-1)
    ds.write_array("v", [0], np.array([5, -1, 7, -1, 2, 9], dtype=np.int32))
    stats = _stats_after_flush(store, ds, "v")
    assert stats == {"row_count": 6, "null_count": 2, "min": 2, "max": 9}


def test_float64_nan_fill_example_from_the_original(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "float64", dims=["x"], shape=[4], fill_value=float("nan"))
    ds.write_array("v", [0], np.array([1, np.nan, 3, np.nan]))
    stats = _stats_after_flush(store, ds, "v")
    assert stats == {"row_count": 4, "null_count": 2, "min": 1.0, "max": 3.0}
    assert isinstance(stats["min"], float) and isinstance(stats["max"], float)


def test_stats_are_none_before_the_first_flush_after_a_write(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int64", dims=["x"], shape=[4], chunk_shape=[2])
    assert ds.array_stats("v") is None
    ds.write_array("v", [0], np.array([1, 2, 3, 4]))
    assert ds.array_stats("v") is None
    store.flush()
    assert ds.array_stats("v") == {"row_count": 4, "null_count": 0, "min": 1, "max": 4}
    ds.write_array("v", [1], np.array([40]))
    assert ds.array_stats("v") is None  # stale stats are never shown
    store.flush()
    assert ds.array_stats("v") == {"row_count": 4, "null_count": 0, "min": 1, "max": 40}


def test_never_written_array_has_only_nulls_after_flush(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "float32", dims=["x", "y"], shape=[3, 5], chunk_shape=[2, 2])
    stats = _stats_after_flush(store, ds, "v")
    assert stats == {"row_count": 15, "null_count": 15, "min": None, "max": None}


def test_without_a_fill_written_zeros_are_data_and_unwritten_cells_are_nulls(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", dims=["x"], shape=[10], chunk_shape=[4])
    ds.write_array("v", [1], np.zeros(3, np.int32))  # part of chunk 0 only
    ds.write_array("v", [8], np.array([0, -5], np.int32))  # the whole edge chunk
    stats = _stats_after_flush(store, ds, "v")
    assert stats == {"row_count": 10, "null_count": 5, "min": -5, "max": 0}


def test_with_a_fill_written_fill_values_and_unwritten_cells_are_nulls(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "uint8", dims=["x"], shape=[10], chunk_shape=[4], fill_value=0)
    ds.write_array("v", [1], np.array([0, 7, 255], np.uint8))
    stats = _stats_after_flush(store, ds, "v")
    assert stats == {"row_count": 10, "null_count": 8, "min": 7, "max": 255}


def test_nan_is_never_a_min_or_max_even_without_a_nan_fill(store):
    ds = store.create_dataset("d")
    ds.define_array("a", "float64", dims=["x"], shape=[4])
    ds.define_array("b", "float32", dims=["x"], shape=[4], fill_value=0)
    ds.write_array("a", [0], np.array([np.nan, -2.5, np.inf, np.nan]))
    ds.write_array("b", [0], np.array([np.nan, 0, 1.5, -np.inf], np.float32))
    store.flush()
    assert ds.array_stats("a") == {"row_count": 4, "null_count": 2, "min": -2.5,
                                   "max": math.inf}
    assert ds.array_stats("b") == {"row_count": 4, "null_count": 2, "min": -math.inf,
                                   "max": 1.5}


def test_string_stats_are_lexicographic_and_count_the_fill_as_null(store):
    ds = store.create_dataset("d")
    ds.define_array("s", "string", dims=["x"], shape=[7], chunk_shape=[3], fill_value="NA")
    ds.define_array("t", "string", dims=["x"], shape=[4], chunk_shape=[3])
    ds.write_array("s", [0], np.array(["pear", "NA", "Apple", "apple", "", "zz"], dtype=object))
    ds.write_array("t", [0], np.array(["b", ""], dtype=object))
    store.flush()
    # "" is written data; "NA" and the unwritten last cell are nulls; "Apple" < "apple"
    assert ds.array_stats("s") == {"row_count": 7, "null_count": 2, "min": "", "max": "zz"}
    assert ds.array_stats("t") == {"row_count": 4, "null_count": 2, "min": "", "max": "b"}


@pytest.mark.parametrize("fill", ["\x00", "NA\x00"])
def test_a_string_fill_ending_in_nul_counts_exactly_its_own_cells(store, store_path, fill):
    """numpy compared the cells with the fill as a fixed-width string, which drops trailing
    NULs: '' counted as the fill '\x00' and the '\x00' cells as values (and 'NA' for
    'NA\x00'); never-written cells of a resized array counted as values."""
    import xarray as xr

    ds = store.create_dataset("d")
    ds.define_array("s", "string", dims=["x"], shape=[6], chunk_shape=[2], fill_value=fill)
    data = np.array([fill, "a", "", "b", fill, fill[:-1] or "c"], dtype=object)
    ds.write_array("s", [0], data)
    store.flush()
    valid = sorted(v for v in data if v != fill)
    expected = {"row_count": 6, "null_count": 2, "min": valid[0], "max": valid[-1]}
    assert reopen(store_path).open_dataset("d").array_stats("s") == expected
    ds.resize_array("s", [20])  # 14 cells never written: nulls
    store.flush()
    assert reopen(store_path).open_dataset("d").array_stats("s")["null_count"] == 16
    masked = reopen(store_path).to_xarray("d")["s"].values[:6]
    assert [isinstance(v, float) for v in masked] == [v == fill for v in data]
    xr.testing.assert_equal(xr.DataArray(masked[1:4]), xr.DataArray(data[1:4]))


def test_timestamp_stats_are_datetime64_and_nat_is_null(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("t", "timestamp_ns", dims=["x"], shape=[5], chunk_shape=[2])
    data = np.array(["2024-03-01", "NaT", "1999-01-01T00:00:00.000000001", "2030-01-01"],
                    dtype="M8[ns]")
    ds.write_array("t", [0], data)
    store.flush()
    stats = reopen(store_path).open_dataset("d").array_stats("t")
    assert stats == {"row_count": 5, "null_count": 2,
                     "min": np.datetime64("1999-01-01T00:00:00.000000001", "ns"),
                     "max": np.datetime64("2030-01-01", "ns")}
    assert stats["min"].dtype == np.dtype("M8[ns]") and stats["max"].dtype == np.dtype("M8[ns]")


def test_timestamp_fill_counts_as_null(store):
    ds = store.create_dataset("d")
    fill = np.datetime64("1970-01-01", "ns")
    ds.define_array("t", "timestamp_ns", dims=["x"], shape=[3], fill_value=fill)
    ds.write_array("t", [0], np.array([fill, "2001-01-01"], dtype="M8[ns]"))
    stats = _stats_after_flush(store, ds, "t")
    assert stats["null_count"] == 2 and stats["min"] == stats["max"] == np.datetime64(
        "2001-01-01", "ns")


@pytest.mark.parametrize("dtype", NUMERIC + ["timestamp_nanoseconds", "string"])
@pytest.mark.parametrize("with_fill", [False, True])
def test_stats_match_a_numpy_reference_over_many_chunks(store, store_path, rng, dtype,
                                                        with_fill):
    shape, chunks = (11, 7), [4, 3]
    ds = store.create_dataset("d")
    pool = sample(dtype, (6,), rng)  # a few distinct values so fill hits happen
    fill = None
    if with_fill:
        fill = pool[0] if dtype != "string" else pool[0]
        if dtype in INTS or dtype in UINTS:
            fill = int(fill)
        elif dtype in FLOATS:
            fill = float(fill)
    ds.define_array("v", dtype, dims=["y", "x"], shape=list(shape), chunk_shape=chunks,
                    fill_value=fill)
    model = np.empty(shape, pool.dtype)
    written = np.zeros(shape, bool)
    for start, size in [((0, 0), (4, 6)), ((5, 2), (6, 5)), ((3, 1), (3, 2)), ((10, 6), (1, 1))]:
        data = pool[rng.integers(0, len(pool), size=size)]
        if dtype in FLOATS:
            data[rng.random(size) < 0.2] = np.nan
        ds.write_array("v", list(start), data)
        window = tuple(slice(s, s + n) for s, n in zip(start, size))
        model[window] = data
        written[window] = True
    store.flush()
    expected = _reference(model, written, fill)
    for stats in (ds.array_stats("v"), reopen(store_path).open_dataset("d").array_stats("v")):
        assert stats == expected
        if dtype == "timestamp_nanoseconds" and expected["min"] is not None:
            assert isinstance(stats["min"], np.datetime64)


@pytest.mark.parametrize("dtype", INTS + UINTS)
def test_integer_extremes_survive_as_exact_python_ints(store, dtype):
    info = np.iinfo(dtype)
    ds = store.create_dataset("d")
    ds.define_array("v", dtype, dims=["x"], shape=[3], chunk_shape=[1])
    ds.write_array("v", [0], np.array([info.max, info.min, 1], dtype=dtype))
    stats = _stats_after_flush(store, ds, "v")
    assert stats["min"] == int(info.min) and stats["max"] == int(info.max)
    assert type(stats["min"]) is int and type(stats["max"]) is int


def test_stats_of_zero_d_arrays(store):
    ds = store.create_dataset("d")
    ds.define_array("a", "int16", dims=[], shape=[], fill_value=3)
    ds.define_array("b", "float64", dims=[], shape=[])
    ds.define_array("c", "string", dims=[], shape=[])
    ds.write_array("a", [], np.array(3, np.int16))
    ds.write_array("b", [], np.array(2.5))
    store.flush()
    assert ds.array_stats("a") == {"row_count": 1, "null_count": 1, "min": None, "max": None}
    assert ds.array_stats("b") == {"row_count": 1, "null_count": 0, "min": 2.5, "max": 2.5}
    assert ds.array_stats("c") == {"row_count": 1, "null_count": 1, "min": None, "max": None}


def test_overwritten_values_no_longer_count(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("v", "int64", dims=["x"], shape=[6], chunk_shape=[4])
    ds.write_array("v", [0], np.array([-100, 1, 2, 3, 4, 100]))
    store.flush()
    ds.write_array("v", [0], np.array([5]))
    ds.write_array("v", [4], np.array([6, 7]))
    store.flush()
    expected = {"row_count": 6, "null_count": 0, "min": 1, "max": 7}
    assert ds.array_stats("v") == expected
    assert reopen(store_path).open_dataset("d").array_stats("v") == expected


def test_stats_are_per_dataset(store):
    for i, values in enumerate(([1, 2], [30, 40])):
        ds = store.create_dataset(f"d{i}")
        ds.define_array("v", "int64", dims=["x"], shape=[3])
        ds.write_array("v", [0], np.array(values))
    store.flush()
    assert store.open_dataset("d0").array_stats("v") == {"row_count": 3, "null_count": 1,
                                                          "min": 1, "max": 2}
    assert store.open_dataset("d1").array_stats("v") == {"row_count": 3, "null_count": 1,
                                                          "min": 30, "max": 40}


def test_string_extremes_survive_a_recompute_from_committed_chunks(store):
    """Segments keep no string min/max in their partials: a flush that recomputes the
    statistics of a string array of many chunks reads its committed chunks for them."""
    ds = store.create_dataset("d")
    ds.define_array("s", "string", dims=["x"], shape=[4], chunk_shape=[2])
    ds.write_array("s", [0], np.array(["b", "a"], dtype=object))
    store.flush()
    ds.write_array("s", [2], np.array(["c"], dtype=object))  # chunk 0 stays committed
    stats = _stats_after_flush(store, ds, "s")
    assert stats == {"row_count": 4, "null_count": 1, "min": "a", "max": "c"}


@pytest.mark.parametrize("how", ["out of order", "stacked, then rewritten one by one"])
def test_stats_of_one_chunk_arrays_follow_the_newest_write_in_any_order(store, store_path, rng,
                                                                        how):
    # a flush takes one-chunk arrays' partials from the pending rows: found by their ordered
    # keys, or through the pending index when rows came out of order or were written again
    names = [f"d{i}" for i in range(60)]
    want = {}
    if how == "out of order":
        views = [store.create_dataset(name) for name in names]
        for view in views:
            view.define_array("x", "float32", ["k"], [5])
        order = rng.permutation(60)
    else:
        values = rng.standard_normal((60, 5)).astype(np.float32)
        store.write_array_across_stacked("x", names, values)
        want = dict(zip(names, values))
        views = [store.open_dataset(name) for name in names]
        order = rng.permutation(60)[:20]
    for i in [*order, *order[:7]]:  # some written twice
        values = rng.standard_normal(5).astype(np.float32)
        values[: i % 3] = np.nan
        views[i].write_array("x", [0], values)
        want[names[i]] = values
    store.flush()
    back = reopen(store_path)
    for name, values in want.items():
        stats = back.open_dataset(name).array_stats("x")
        assert stats["null_count"] == int(np.isnan(values).sum())
        assert stats["min"] == np.nanmin(values) and stats["max"] == np.nanmax(values)
