"""Bulk reads across datasets: always equal to reading each dataset and stacking."""

from __future__ import annotations

import numpy as np
import pytest

import atlas


def _fill_store(path, dtype="float32", n=12, shape=(9, 7), chunks=(4, 3), fill=float("nan")):
    rng = np.random.default_rng(0)
    store = atlas.Atlas.create(path)
    for i in range(n):
        ds = store.create_dataset(f"d{i}")
        ds.define_array("v", dtype, ["y", "x"], list(shape), list(chunks), fill_value=fill)
        if i % 3 != 2:  # every third dataset leaves its array unwritten (all fill)
            data = rng.normal(size=shape).astype(dtype)
            ds.write_array("v", [0, 0], data)
        if i % 4 == 1:  # a partial write leaves some chunks missing elsewhere
            ds.write_array("v", [1, 2], np.full((2, 2), 7, dtype))
    return store


def _reference(store, names, array, start=None, shape=None):
    return np.stack([store.open_dataset(n).read_array(array, start, shape) for n in names])


@pytest.mark.parametrize("flushed", [False, True])
def test_stacked_read_equals_per_dataset_reads_in_any_order_with_repeats(tmp_path, flushed):
    store = _fill_store(tmp_path / "s")
    if flushed:
        store.flush()
    names = ["d5", "d0", "d5", "d11", "d2", "d7", "d0"]
    for start, shape in [(None, None), ([1, 1], [5, 4]), ([8, 6], [1, 1]), ([0, 0], [0, 3])]:
        got = store.read_array_across_stacked("v", names, start, shape)
        np.testing.assert_array_equal(got, _reference(store, names, "v", start, shape))


def test_stacked_read_sees_rewritten_and_deleted_datasets(tmp_path):
    store = _fill_store(tmp_path / "s")
    store.flush()
    store.delete_dataset("d1")
    ds = store.create_dataset("d1")
    ds.define_array("v", "float32", ["y", "x"], [9, 7], [4, 3], fill_value=-5.0)
    ds.write_array("v", [4, 0], np.ones((2, 7), np.float32))
    store.flush()
    got = store.read_array_across_stacked("v", ["d0", "d1"])
    expected = np.full((9, 7), -5.0, np.float32)
    expected[4:6] = 1
    np.testing.assert_array_equal(got[1], expected)
    store.compact()
    reopened = atlas.Atlas.open(tmp_path / "s")
    np.testing.assert_array_equal(reopened.read_array_across_stacked("v", ["d0", "d1"]), got)


def test_a_stacked_read_of_nothing_says_why(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    with pytest.raises(atlas.ArrayNotFoundError, match="holds no datasets: no array 'v'"):
        store.read_array_across_stacked("v")  # every dataset, of none
    store.create_dataset("d0")
    with pytest.raises(ValueError, match="dataset_names is empty"):
        store.read_array_across_stacked("v", [])  # an argument naming nothing


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64", "uint64", "float64"])
def test_stacked_read_of_numeric_dtypes(tmp_path, dtype):
    store = _fill_store(tmp_path / "s", dtype=dtype, n=5, fill=None)
    store.flush()
    names = store.list_datasets()
    np.testing.assert_array_equal(store.read_array_across_stacked("v", names, [2, 1], [6, 5]),
                                  _reference(store, names, "v", [2, 1], [6, 5]))


def test_stacked_read_of_strings_and_timestamps(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    base = np.datetime64("2024-01-01", "ns")
    for i in range(4):
        ds = store.create_dataset(f"d{i}")
        ds.define_array("label", "string", ["n"], [5], [2], fill_value="none")
        ds.write_array("label", [i % 3], np.array([f"x{i}", f"é{i}"], dtype=object))
        ds.define_array("when", "timestamp_ns", ["n"], [5], [3])
        ds.write_array("when", [1], base + np.arange(3).astype("timedelta64[h]") * i)
    for flush in (False, True):
        if flush:
            store.flush()
        names = ["d3", "d0", "d2"]
        labels = store.read_array_across_stacked("label", names)
        assert labels.dtype == object
        assert labels.tolist() == _reference(store, names, "label").tolist()
        when = store.read_array_across_stacked("when", names)
        assert when.dtype == np.dtype("datetime64[ns]")
        np.testing.assert_array_equal(when, _reference(store, names, "when"))


def test_zero_dimensional_arrays_stack_into_a_vector(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    for i in range(3):
        ds = store.create_dataset(f"d{i}")
        ds.define_array("s", "float64", [], [])
        ds.write_array("s", [], np.array(i * 1.5))
    store.flush()
    np.testing.assert_array_equal(store.read_array_across_stacked("s", ["d2", "d0"]), [3.0, 0.0])


def test_missing_dataset_or_array_raises_key_error_naming_it(tmp_path):
    store = _fill_store(tmp_path / "s", n=3)
    store.create_dataset("empty")
    with pytest.raises(KeyError, match="nope"):
        store.read_array_across_stacked("v", ["d0", "nope"])
    with pytest.raises(KeyError, match="empty"):
        store.read_array_across_stacked("v", ["d0", "empty"])


def test_mismatched_windows_raise_value_error_naming_first_mismatch(tmp_path):
    store = _fill_store(tmp_path / "s", n=3)
    ds = store.create_dataset("wide")
    ds.define_array("v", "float32", ["y", "x"], [9, 8], [4, 3])
    with pytest.raises(ValueError, match="wide"):
        store.read_array_across_stacked("v", ["d0", "d1", "wide", "d2"])
    # a window that fits both shapes stacks fine
    got = store.read_array_across_stacked("v", ["d0", "wide"], [0, 0], [9, 7])
    assert got.shape == (2, 9, 7)
    ds = store.create_dataset("ints")
    ds.define_array("v", "int32", ["y", "x"], [9, 7], [4, 3])
    with pytest.raises(ValueError, match="ints"):
        store.read_array_across_stacked("v", ["d0", "ints"])


def test_out_buffer_is_filled_in_place_and_checked(tmp_path):
    store = _fill_store(tmp_path / "s", n=4)
    names = store.list_datasets()
    out = np.empty((4, 9, 7), np.float32)
    result = store.read_array_across_stacked("v", names, out=out)
    assert result is out
    np.testing.assert_array_equal(out, _reference(store, names, "v"))
    with pytest.raises(ValueError, match="shape"):
        store.read_array_across_stacked("v", names, out=np.empty((3, 9, 7), np.float32))
    with pytest.raises(ValueError, match="float32"):
        store.read_array_across_stacked("v", names, out=np.empty((4, 9, 7), np.float64))
    with pytest.raises(TypeError):
        store.read_array_across_stacked("v", names, out=[0] * 4)
    frozen = np.zeros((4, 9, 7), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        store.read_array_across_stacked("v", names, out=frozen)
    assert not frozen.any()


def test_bad_windows_and_names_are_rejected(tmp_path):
    store = _fill_store(tmp_path / "s", n=2)
    with pytest.raises(IndexError, match="axis 1"):
        store.read_array_across_stacked("v", ["d0"], [0, 5], [1, 5])
    with pytest.raises(ValueError, match="rank"):
        store.read_array_across_stacked("v", ["d0"], [0], [1])
    with pytest.raises(TypeError):
        store.read_array_across_stacked("v", "d0")
    with pytest.raises(ValueError, match="empty"):
        store.read_array_across_stacked("v", [])


def test_read_array_across_returns_none_where_the_array_is_missing(tmp_path):
    store = _fill_store(tmp_path / "s", n=3)
    other = store.create_dataset("other")
    other.define_array("w", "int8", ["n"], [2])
    ds = store.create_dataset("long")
    ds.define_array("v", "float32", ["y", "x"], [12, 7], [5, 3])
    ds.write_array("v", [0, 0], np.arange(84, dtype=np.float32).reshape(12, 7))
    got = store.read_array_across("v", ["d1", "other", "long", "d0"])
    assert got[1] is None
    np.testing.assert_array_equal(got[0], store.open_dataset("d1").read_array("v"))
    np.testing.assert_array_equal(got[2], np.arange(84, dtype=np.float32).reshape(12, 7))
    np.testing.assert_array_equal(got[3], store.open_dataset("d0").read_array("v"))
    with pytest.raises(KeyError, match="ghost"):
        store.read_array_across("v", ["d0", "ghost"])


def test_read_array_across_gives_0d_arrays_as_arrays_like_read_array(tmp_path):
    """It gave numpy scalars (and a bare str) for 0-D arrays."""
    store = atlas.Atlas.create(tmp_path / "s")
    for name, value, text in (("a", 1.5, "x"), ("b", -2.0, "")):
        ds = store.create_dataset(name)
        ds.define_array("lat", "float64", [], [])
        ds.write_array("lat", [], np.float64(value))
        ds.define_array("tag", "string", [], [])
        ds.write_array("tag", [], np.array(text, dtype=object))
    for array in ("lat", "tag"):
        got = store.read_array_across(array, ["b", "a"])
        for name, one in zip(["b", "a"], got):
            alone = store.open_dataset(name).read_array(array)
            assert isinstance(one, np.ndarray) and one.shape == () == alone.shape
            assert one.dtype == alone.dtype and one[()] == alone[()]


def test_read_arrays_reads_each_name_of_one_dataset(tmp_path):
    store = _fill_store(tmp_path / "s", n=1)
    ds = store.open_dataset("d0")
    ds.define_array("w", "int16", ["y", "x"], [9, 7])
    got = ds.read_arrays(["v", "w", "missing"], [1, 1], [2, 2])
    np.testing.assert_array_equal(got["v"], ds.read_array("v", [1, 1], [2, 2]))
    np.testing.assert_array_equal(got["w"], np.zeros((2, 2), np.int16))
    assert got["missing"] is None


def test_large_stacked_read_uses_threads_and_matches(tmp_path):
    # big enough to take the thread-pool path (over 1 MiB decoded)
    store = atlas.Atlas.create(tmp_path / "s", codec="lz4")
    rng = np.random.default_rng(1)
    for i in range(40):
        ds = store.create_dataset(f"d{i}")
        ds.define_array("v", "float32", ["y", "x"], [64, 96], [16, 96])
        ds.write_array("v", [0, 0], rng.random((64, 96), dtype=np.float32))
    store.flush()
    names = list(reversed(store.list_datasets()))
    got = store.read_array_across_stacked("v", names, [3, 5], [50, 80])
    np.testing.assert_array_equal(got, _reference(store, names, "v", [3, 5], [50, 80]))


def _stacked_store(path, n=300):
    """Three arrays of one chunk each, written stacked: a read of every dataset finds each
    chunk at its own row of the index."""
    rng = np.random.default_rng(2)
    store = atlas.Atlas.create(path, block_size=4096)
    names = [f"p{i:04d}" for i in range(n)]
    data = {"lat": rng.random(n), "temp": rng.random((n, 40), dtype=np.float32),
            "grid": rng.integers(0, 99, (n, 6, 5), dtype=np.int16)}
    dims = {"lat": [], "temp": ["z"], "grid": ["y", "x"]}
    for array, values in data.items():
        store.write_array_across_stacked(array, names, values, dims=dims[array])
    store.flush()
    return store, data


@pytest.mark.parametrize("array,start,shape", [
    ("lat", None, None), ("temp", None, None), ("temp", [7], [20]), ("grid", None, None),
    ("grid", [1, 2], [4, 3]), ("grid", [0, 1], [6, 4])])
def test_plan_of_a_read_of_everything_equals_the_searched_plan(tmp_path, array, start, shape):
    from atlas.core._index import ChunkIndex
    from atlas.core._read import execute, plan_read

    store, data = _stacked_store(tmp_path / "s")
    catalog = store._catalog
    slots, schema_ids, _found = catalog.rows(array, catalog.live_dids(), everything=True)
    [index] = store._indexes(array)
    assert index.is_every_row(slots, 0)
    schema = catalog.schema(int(schema_ids[0]))
    start = tuple(start or [0] * schema.ndim)
    shape = tuple(shape or schema.shape)
    args = (slots, schema_ids, catalog.schemas(), start, shape, schema.dtype.itemsize)
    fast = plan_read([index], *args)
    searched = plan_read([index, ChunkIndex.empty()], *args)  # two indexes: found by search
    for field in ("block_index", "block_number", "chunk_block", "chunk_src", "chunk_length",
                  "chunk_row", "chunk_extent", "chunk_src_start", "chunk_dst_start",
                  "chunk_box", "chunk_schema", "fill_row"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(searched, field), field)
    want = data[array][(slice(None), *(slice(a, a + w) for a, w in zip(start, shape)))]
    for plan in (fast, searched):
        out = np.empty(want.shape, want.dtype)
        execute(plan, out, None)
        np.testing.assert_array_equal(out, want)
    got = store.read_array_across_stacked(array, start=list(start), shape=list(shape))
    np.testing.assert_array_equal(got, want)


def test_read_of_everything_refuses_a_chunk_of_the_wrong_length(tmp_path):
    import dataclasses

    from atlas.core._read import execute, plan_read

    store, data = _stacked_store(tmp_path / "s")
    catalog = store._catalog
    slots, schema_ids, _found = catalog.rows("temp", catalog.live_dids(), everything=True)
    [index] = store._indexes("temp")
    length = index.length.copy()
    length[123] -= 4  # one chunk in the index claims a value less than its extent holds
    bad = dataclasses.replace(index, length=length)
    plan = plan_read([bad], slots, schema_ids, catalog.schemas(), (0,), (40,), 4)
    with pytest.raises(atlas.CorruptionError, match="a chunk holds 156 bytes, its extent "
                                                    "needs 160"):
        execute(plan, np.empty((len(slots), 40), np.float32), None)
    np.testing.assert_array_equal(store.read_array_across_stacked("temp"), data["temp"])


@pytest.mark.parametrize("reopen", [False, True])
def test_a_stacked_read_of_every_dataset_skips_the_deleted_ones(tmp_path, reopen):
    """Deleted datasets keep their array rows until a merge from the oldest part drops them:
    a read of every dataset (no names) takes the live ones, in creation order, however the
    deletes, re-creations and deleted arrays interleave."""
    path = tmp_path / "s"
    store = _fill_store(path, n=10, shape=(4, 4), chunks=(4, 4))
    store.flush()
    store.delete_dataset("d3")  # had the array
    store.delete_dataset("d0")  # the first one
    store.open_dataset("d6").delete_array("v")  # a live dataset without the array
    store.flush()
    store.delete_dataset("d9")  # the last one, in another commit
    again = store.create_dataset("d3")  # the name again: a new dataset, last in order
    again.define_array("v", "float32", ["y", "x"], [4, 4], [4, 4])
    again.write_array("v", [0, 0], np.arange(16, dtype=np.float32).reshape(4, 4))
    store.flush()
    reader = atlas.Atlas.open(path) if reopen else store
    names = [n for n in reader.list_datasets() if n != "d6"]
    assert names == ["d1", "d2", "d4", "d5", "d7", "d8", "d3"]
    with pytest.raises(KeyError, match="d6"):
        reader.read_array_across_stacked("v")  # d6 has no v: the read says so
    reader.open_dataset("d6").define_array("v", "float32", ["y", "x"], [4, 4], [4, 4],
                                           fill_value=-1.0)
    reader.flush()
    got = reader.read_array_across_stacked("v")
    expected = _reference(reader, reader.list_datasets(), "v")
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[-1], np.arange(16, dtype=np.float32).reshape(4, 4))
    # the rows of every live dataset without a search, as the search finds them
    catalog = reader._catalog
    live = catalog.live_dids()
    fast, searched = catalog.rows("v", live, everything=True), catalog.rows("v", live)
    for a, b in zip(fast, searched):
        np.testing.assert_array_equal(a, b)
