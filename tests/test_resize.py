"""``DatasetView.resize_array``: arrays grow and shrink along any axis, against a numpy model.

A resize moves the stored chunks onto the chunk grid of the new shape (chunk numbers and the
clipped extents of edge chunks depend on the shape): cells outside the old shape read as the
fill, cells outside the new one are gone (a later grow reads the fill there), statistics after
a flush are exact, and nothing reaches the store before ``flush()``.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import atlas

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "property_tests"))
from strategies import (  # noqa: E402  (the property tests' strategies and numpy model)
    arrays,
    assert_same,
    dtypes,
    fills,
    new_model,
    reference_stats,
    window_slices,
    windows,
)


@pytest.fixture
def store(store_path):
    return atlas.Atlas.create(store_path)


def reopened(store: atlas.Atlas) -> atlas.Atlas:
    store.flush()
    return atlas.Atlas.open(store.location)


def resized(model: np.ndarray, shape, fill) -> np.ndarray:
    """The numpy model of a resize: the overlap kept, the rest the fill."""
    out = np.empty(shape, model.dtype)
    out[...] = fill
    box = tuple(slice(0, min(a, b)) for a, b in zip(model.shape, shape))
    out[box] = model[box]
    return out


def stats_of(model: np.ndarray, written: np.ndarray, fill) -> dict:
    return reference_stats(model, written, fill)


# -- growing and shrinking -----------------------------------------------------------------


@pytest.mark.parametrize("new_shape", [(7, 5), (5, 11), (9, 13), (3, 5), (5, 2), (2, 3),
                                       (1, 1), (9, 2), (2, 13)])
def test_grow_and_shrink_along_any_axis_match_numpy_before_flush_and_after_reopen(
        store, new_shape):
    ds = store.create_dataset("d")
    ds.define_array("v", "float32", ["y", "x"], [5, 7], [2, 3], fill_value=float("nan"))
    data = np.arange(35, dtype=np.float32).reshape(5, 7)
    ds.write_array("v", [0, 0], data)
    store.flush()
    ds.resize_array("v", list(new_shape))
    expected = resized(data, new_shape, np.nan)
    assert ds.array_meta("v")["shape"] == list(new_shape)
    assert_same(ds.read_array("v"), expected)
    assert ds.array_stats("v") is None  # a resize changes the statistics: None until flush
    back = reopened(store).open_dataset("d")
    assert_same(back.read_array("v"), expected)
    written = np.zeros(new_shape, bool)
    written[tuple(slice(0, min(a, b)) for a, b in zip((5, 7), new_shape))] = True
    assert back.array_stats("v") == stats_of(expected, written, float("nan"))


@pytest.mark.parametrize("fill", [None, -7])
def test_shrinking_drops_cells_and_a_later_grow_reads_the_fill_there(store, fill):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", ["y", "x"], [6, 6], [4, 4], fill_value=fill)
    data = np.arange(1, 37, dtype=np.int32).reshape(6, 6)
    ds.write_array("v", [0, 0], data)
    store.flush()
    ds.resize_array("v", [3, 5])  # every chunk straddles the new edge
    store.flush()
    ds.resize_array("v", [6, 6])
    expected = resized(data[:3, :5], (6, 6), 0 if fill is None else fill)
    assert_same(ds.read_array("v"), expected)
    store = reopened(store)
    ds = store.open_dataset("d")
    assert_same(ds.read_array("v"), expected)
    written = np.zeros((6, 6), bool)
    written[:3, :5] = True
    assert ds.array_stats("v") == stats_of(expected, written, fill)


def test_shrink_and_grow_in_one_session_without_a_flush_in_between(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int64", ["x"], [10], [3])
    ds.write_array("v", [0], np.arange(10))
    ds.resize_array("v", [4])
    ds.resize_array("v", [8])
    expected = np.array([0, 1, 2, 3, 0, 0, 0, 0])
    assert_same(ds.read_array("v"), expected)
    ds = reopened(store).open_dataset("d")
    assert_same(ds.read_array("v"), expected)
    assert ds.array_stats("v") == {"row_count": 8, "null_count": 4, "min": 0, "max": 3}


def test_partly_written_chunks_not_yet_encoded_move_with_the_resize(store):
    """Chunks written in parts are kept decoded until the flush: the resize encodes them."""
    ds = store.create_dataset("d")
    ds.define_array("v", "float64", ["y", "x"], [4, 4], [3, 3])
    ds.write_array("v", [1, 1], np.full((2, 2), 5.0))
    ds.resize_array("v", [4, 7])  # the grid gains a column of chunks: every number changes
    ds.write_array("v", [0, 5], np.full((4, 2), 9.0))
    expected = np.zeros((4, 7))
    expected[1:3, 1:3] = 5.0
    expected[:, 5:] = 9.0
    assert_same(ds.read_array("v"), expected)
    ds = reopened(store).open_dataset("d")
    assert_same(ds.read_array("v"), expected)
    written = np.zeros((4, 7), bool)
    written[1:3, 1:3] = written[:, 5:] = True
    assert ds.array_stats("v") == stats_of(expected, written, None)


@pytest.mark.parametrize("dtype, values, fill", [
    ("string", np.array([["a", "bb", "ccc"], ["", "é", "zz"]], dtype=object), None),
    ("string", np.array([["a", "bb", "ccc"], ["", "é", "zz"]], dtype=object), "N/A"),
    ("timestamp_nanoseconds",
     np.array([["2024-01-01", "NaT", "2024-03-01"], ["1999-12-31", "2000-01-01", "2262-01-01"]],
              dtype="datetime64[ns]"), None),
    ("uint64", np.array([[2**64 - 1, 0, 5], [1, 2, 3]], dtype=np.uint64), 7),
])
def test_strings_timestamps_and_unsigned_grow_and_shrink_exactly(store, dtype, values, fill):
    ds = store.create_dataset("d")
    ds.define_array("v", dtype, ["y", "x"], [2, 3], [1, 2], fill_value=fill)
    ds.write_array("v", [0, 0], values)
    store.flush()
    ds.resize_array("v", [3, 2])
    ds.resize_array("v", [3, 4])
    default = {"string": "", "timestamp_nanoseconds": np.datetime64("NaT", "ns")}.get(dtype, 0)
    expected = resized(values[:2, :2], (3, 4), default if fill is None else fill)
    written = np.zeros((3, 4), bool)
    written[:2, :2] = True
    ds = reopened(store).open_dataset("d")
    assert_same(ds.read_array("v"), expected)
    assert ds.array_stats("v") == stats_of(expected, written, fill)


def test_zero_length_dimensions_shrinking_to_nothing_and_growing_from_it(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int16", ["t", "x"], [0, 3], [2, 2], fill_value=-1)
    assert ds.read_array("v").shape == (0, 3)
    ds.resize_array("v", [3, 3])
    ds.write_array("v", [0, 0], np.arange(9, dtype=np.int16).reshape(3, 3))
    store.flush()
    ds.resize_array("v", [0, 3])
    store.flush()
    assert ds.read_array("v").shape == (0, 3)
    assert ds.array_stats("v") == {"row_count": 0, "null_count": 0, "min": None, "max": None}
    ds.resize_array("v", [3, 0])
    ds.resize_array("v", [4, 3])
    expected = np.full((4, 3), -1, np.int16)
    assert_same(ds.read_array("v"), expected)
    ds = reopened(store).open_dataset("d")
    assert_same(ds.read_array("v"), expected)
    assert ds.array_stats("v") == {"row_count": 12, "null_count": 12, "min": None, "max": None}


def test_scalars_resize_only_to_the_empty_shape(store):
    ds = store.create_dataset("d")
    ds.define_array("s", "float64", [], [], fill_value=1.5)
    ds.write_array("s", [], np.array(2.5))
    ds.resize_array("s", [])  # same shape: nothing changes
    assert_same(ds.read_array("s"), np.array(2.5))
    with pytest.raises(ValueError, match=r"keeps the rank; expected 0 sizes"):
        ds.resize_array("s", [1])


def test_growing_huge_along_one_axis_stores_no_new_cells(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "float64", ["t", "x"], [3, 4], [2, 4], fill_value=float("nan"))
    ds.write_array("v", [0, 0], np.ones((3, 4)))
    store.flush()
    before = store.usage()["segment_bytes"]
    n = 2**40
    ds.resize_array("v", [n, 4])
    ds.write_array("v", [n - 1, 0], np.full((1, 4), 2.0))
    store.flush()
    # the edge chunk was completed and one chunk written far away: a few KB, not 32 TiB
    assert store.usage()["segment_bytes"] - before < 4096
    assert ds.array_stats("v") == {"row_count": 4 * n, "null_count": 4 * n - 16, "min": 1.0,
                                   "max": 2.0}
    np.testing.assert_array_equal(ds.read_array("v", [2, 0], [3, 4])[:, 0], [1.0, np.nan, np.nan])
    np.testing.assert_array_equal(ds.read_array("v", [n - 2, 0], [2, 4])[:, 0], [np.nan, 2.0])
    ds.resize_array("v", [4, n])  # both axes at once: shrink one, grow the other
    expected = np.full((4, 6), np.nan)
    expected[:3, :4] = 1.0
    assert_same(ds.read_array("v", [0, 0], [4, 6]), expected)


def test_writes_after_a_grow_reach_the_new_cells_and_bounds_follow_the_shape(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", ["x"], [3], [2])
    ds.write_array("v", [0], np.array([1, 2, 3], np.int32))
    with pytest.raises(IndexError):
        ds.write_array("v", [3], np.array([4], np.int32))
    ds.resize_array("v", [5])
    ds.write_array("v", [3], np.array([4, 5], np.int32))
    assert_same(ds.read_array("v"), np.array([1, 2, 3, 4, 5], np.int32))
    ds.resize_array("v", [2])
    with pytest.raises(IndexError, match="axis 0"):
        ds.read_array("v", [0], [3])


def test_single_chunk_arrays_keep_exact_statistics_through_resizes(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "float32", ["x"], [4])  # one chunk of 4
    ds.write_array("v", [0], np.array([4, 3, 2, 1], np.float32))
    store.flush()
    ds.resize_array("v", [2])
    store.flush()
    assert ds.array_stats("v") == {"row_count": 2, "null_count": 0, "min": 3.0, "max": 4.0}
    ds.resize_array("v", [3])  # still one chunk (of up to 4 cells), holding 3 now
    store.flush()
    assert ds.array_stats("v") == {"row_count": 3, "null_count": 1, "min": 3.0, "max": 4.0}
    ds.resize_array("v", [9])
    ds = reopened(store).open_dataset("d")
    assert ds.array_stats("v") == {"row_count": 9, "null_count": 7, "min": 3.0, "max": 4.0}
    assert_same(ds.read_array("v"), np.array([4, 3, 0, 0, 0, 0, 0, 0, 0], np.float32))


# -- the catalog: schemas, visibility, other handles -----------------------------------------


def test_a_resize_is_a_new_schema_for_that_dataset_only(store):
    for name in ("a", "b"):
        ds = store.create_dataset(name)
        ds.define_array("v", "int8", ["x"], [4], [2], fill_value=0)
        ds.write_array("v", [0], np.array([1, 2, 3, 4], np.int8))
    catalog = store._catalog
    before = catalog.array_row("v", store._did("a"))
    store.open_dataset("a").resize_array("v", [6])
    after = catalog.array_row("v", store._did("a"))
    assert after[0] == before[0]  # the same slot: array attributes stay
    assert after[1] != before[1]
    assert catalog.array_row("v", store._did("b"))[1] == before[1]
    store = reopened(store)
    assert store.open_dataset("a").array_meta("v")["shape"] == [6]
    assert store.open_dataset("b").array_meta("v")["shape"] == [4]
    assert_same(store.open_dataset("b").read_array("v"), np.array([1, 2, 3, 4], np.int8))
    assert sorted(map(tuple, store.array_stats("v")["shapes"])) == [(4,), (6,)]


def test_array_attributes_survive_a_resize(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "float64", ["x"], [2])
    ds.set_array_attribute("v", "units", "K")
    ds.resize_array("v", [5])
    assert reopened(store).open_dataset("d").array_attributes("v") == {"units": "K"}


def test_nothing_is_visible_to_other_handles_before_flush(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", ["x"], [4], [2])
    ds.write_array("v", [0], np.arange(4, dtype=np.int32))
    store.flush()
    ds.resize_array("v", [2])
    other = atlas.Atlas.open(store.location)
    assert other.open_dataset("d").array_meta("v")["shape"] == [4]
    assert_same(other.open_dataset("d").read_array("v"), np.arange(4, dtype=np.int32))
    dropped = atlas.Atlas.open(store.location)
    dropped.open_dataset("d").resize_array("v", [9])
    del dropped  # a handle dropped without flushing: its resize never happened
    store.flush()
    fresh = atlas.Atlas.open(store.location)
    assert fresh.open_dataset("d").array_meta("v")["shape"] == [2]
    assert_same(fresh.open_dataset("d").read_array("v"), np.arange(2, dtype=np.int32))


def test_every_view_of_the_dataset_sees_the_new_shape(store):
    first = store.create_dataset("d")
    first.define_array("v", "int32", ["x"], [4], [4])
    second = store.open_dataset("d")
    second.write_array("v", [0], np.arange(4, dtype=np.int32))  # caches the array's row
    first.resize_array("v", [6])
    second.write_array("v", [4], np.array([7, 8], np.int32))
    assert_same(second.read_array("v"), np.array([0, 1, 2, 3, 7, 8], np.int32))


def test_compaction_drops_chunks_a_shrink_left_behind(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", ["y", "x"], [4, 6], [2, 2])
    ds.write_array("v", [0, 0], np.arange(24, dtype=np.int32).reshape(4, 6))
    store.flush()
    ds.resize_array("v", [1, 1])
    store.compact(grace=0)
    assert store.usage()["per_array"]["v"]["chunks"] == 1
    assert store.verify().ok
    ds = atlas.Atlas.open(store.location).open_dataset("d")
    ds.resize_array("v", [4, 6])
    expected = np.zeros((4, 6), np.int32)
    assert_same(ds.read_array("v"), expected)


# -- stacked reads of datasets whose shapes differ -------------------------------------------


def test_stacked_reads_after_resizes_behave_as_for_datasets_defined_apart(store):
    for name, shape in (("a", [4, 4]), ("b", [4, 4]), ("c", [6, 3])):
        ds = store.create_dataset(name)
        ds.define_array("v", "float32", ["y", "x"], shape, [2, 2], fill_value=-1.0)
        ds.write_array("v", [0, 0], np.full(shape, ord(name), np.float32))
    store.flush()
    store.open_dataset("b").resize_array("v", [6, 3])
    # whole arrays of different shapes do not stack, and the message names the first mismatch
    with pytest.raises(ValueError, match=r"dataset 'b' gives a float32 window of shape \[6, 3\]"):
        store.read_array_across_stacked("v", ["a", "b", "c"])
    # every dataset (no names given, a fresh handle): the messages name the datasets too
    fresh = reopened(store)
    with pytest.raises(ValueError, match=r"dataset 'b' gives .* dataset 'a' gave"):
        fresh.read_array_across_stacked("v")
    with pytest.raises(atlas.OutOfBoundsError, match=r"'v' in dataset 'a'"):
        atlas.Atlas.open(store.location).read_array_across_stacked("v", start=[5, 0])
    with pytest.raises(ValueError, match=r"'v' in dataset 'a': start \[0\] has rank 1"):
        atlas.Atlas.open(store.location).read_array_across_stacked("v", start=[0])
    with pytest.raises(TypeError, match=r"'v' in dataset 'a': start must hold ints"):
        atlas.Atlas.open(store.location).read_array_across_stacked("v", start=[0.5, 0])
    # a window every dataset holds does
    got = store.read_array_across_stacked("v", ["a", "b", "c"], [0, 0], [4, 3])
    for i, name in enumerate("abc"):
        assert_same(got[i], np.full((4, 3), ord(name), np.float32))
    # the same shapes stack again, reading the fill where a dataset grew
    store.open_dataset("a").resize_array("v", [6, 3])
    grown = {name: np.full((6, 3), -1, np.float32) for name in "ab"}
    for name in "ab":
        grown[name][:4, :3] = ord(name)
    for reader in (store, reopened(store)):
        got = reader.read_array_across_stacked("v", ["a", "b", "c"])
        assert got.shape == (3, 6, 3)
        assert_same(got[0], grown["a"])
        assert_same(got[1], grown["b"])
        assert_same(got[2], np.full((6, 3), ord("c"), np.float32))
        listed = reader.read_array_across("v", ["c", "a"])
        assert_same(listed[0], got[2])
        assert_same(listed[1], got[0])


def test_stacked_write_into_a_resized_array_of_the_same_shape(store):
    ds = store.create_dataset("a")
    ds.define_array("v", "int64", ["x"], [2])  # one chunk of 2, so 2 chunks once resized
    ds.resize_array("v", [3])
    store.write_array_across_stacked("v", ["a", "b"], np.arange(6).reshape(2, 3), dims=["x"],
                                     chunk_shape=[2])
    assert_same(reopened(store).read_array_across_stacked("v"), np.arange(6).reshape(2, 3))


# -- errors ----------------------------------------------------------------------------------


def test_bad_shapes_raise_typed_errors_saying_what_was_expected(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", ["y", "x"], [2, 3])
    with pytest.raises(ValueError, match=r"keeps the rank; expected 2 sizes \(one per "
                                         r"dimension \['y', 'x'\], now \[2, 3\]\), got \[4\]"):
        ds.resize_array("v", [4])
    with pytest.raises(ValueError, match=r"sizes >= 0, got \[2, -1\] \(-1 on axis 1, "
                                         r"dimension 'x'\)"):
        ds.resize_array("v", [2, -1])
    for bad in ([2.0, 3], [True, 3], ["2", 3], [None, 3]):
        with pytest.raises(TypeError, match="is not an int"):
            ds.resize_array("v", bad)
    for bad in (5, "23", None):
        with pytest.raises(TypeError, match=r"needs a shape of 2 sizes"):
            ds.resize_array("v", bad)
    with pytest.raises(OverflowError):
        ds.resize_array("v", [2**62, 4])
    with pytest.raises(atlas.ArrayNotFoundError, match=r"dataset 'd' has no array 'w'"):
        ds.resize_array("w", [1, 1])
    with pytest.raises(KeyError):
        ds.resize_array("w", [1, 1])
    ds.resize_array("v", np.array([4, 1]))  # numpy integers are ints
    assert ds.array_meta("v")["shape"] == [4, 1]


def test_read_only_handles_refuse_a_resize(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int32", ["x"], [2])
    store.flush()
    ro = atlas.Atlas.open(store.location, read_only=True)
    with pytest.raises(atlas.ReadOnlyError):
        ro.open_dataset("d").resize_array("v", [3])


# -- a property: random resizes, writes, flushes and reopens against numpy ------------------

SHAPES = st.lists(st.integers(0, 6), min_size=1, max_size=2).map(tuple)


class ResizeMachine(RuleBasedStateMachine):
    """One array in two datasets ("a" is resized, "b" keeps the schema both started with),
    against a model {"data", "written"} per dataset."""

    @initialize(dtype=dtypes(), shape=SHAPES, data=st.data())
    def define(self, dtype, shape, data):
        self.path = tempfile.mkdtemp(prefix="atlas-resize-")
        self.store = atlas.Atlas.create(self.path, block_size=4096)
        chunks = data.draw(st.tuples(*(st.integers(1, 4) for _ in shape)), "chunk_shape")
        self.dtype, self.fill = dtype, data.draw(fills(dtype), "fill")
        self.model = {}
        for name in ("a", "b"):
            ds = self.store.create_dataset(name)
            ds.define_array("v", dtype, [f"d{i}" for i in range(len(shape))], list(shape),
                            list(chunks), self.fill)
            self.model[name] = {"data": new_model(dtype, shape, self.fill),
                                "written": np.zeros(shape, bool), "fresh": False}
        self.committed = None

    def teardown(self):
        shutil.rmtree(self.path, ignore_errors=True)

    @rule(data=st.data(), name=st.sampled_from(["a", "a", "b"]))
    def write(self, data, name):
        arr = self.model[name]
        start, extent = data.draw(windows(arr["data"].shape), "window")
        values = data.draw(arrays(self.dtype, extent), "values")
        self.store.open_dataset(name).write_array("v", list(start), values)
        arr["data"][window_slices(start, extent)] = values
        arr["written"][window_slices(start, extent)] = True
        arr["fresh"] = False

    @rule(data=st.data())
    def resize(self, data):
        arr = self.model["a"]
        old = arr["data"].shape
        shape = tuple(data.draw(st.one_of(st.integers(0, 9), st.just(n)), f"size {i}")
                      for i, n in enumerate(old))
        self.store.open_dataset("a").resize_array("v", list(shape))
        fill = new_model(self.dtype, (), self.fill)[()]
        arr["data"] = resized(arr["data"], shape, fill)
        arr["written"] = resized(arr["written"], shape, False)
        if shape != old:
            arr["fresh"] = False

    @rule()
    def flush(self):
        self.store.flush()
        for arr in self.model.values():
            arr["fresh"] = True
        self.committed = copy.deepcopy(self.model)

    @precondition(lambda self: self.committed is not None)
    @rule()
    def reopen(self):
        self.store = atlas.Atlas.open(self.path)
        self.model = copy.deepcopy(self.committed)

    @rule()
    def compact(self):
        self.store.compact(grace=0)
        for arr in self.model.values():
            arr["fresh"] = True
        self.committed = copy.deepcopy(self.model)

    @invariant()
    def reads_and_stats_match(self):
        for name, arr in self.model.items():
            ds = self.store.open_dataset(name)
            assert ds.array_meta("v")["shape"] == list(arr["data"].shape)
            assert_same(ds.read_array("v"), arr["data"])
            stats = ds.array_stats("v")
            if arr["fresh"]:
                assert stats == reference_stats(arr["data"], arr["written"], self.fill)
            else:
                assert stats is None

    @invariant()
    def stacked_reads_match_when_the_shapes_agree(self):
        a, b = self.model["a"]["data"], self.model["b"]["data"]
        if a.shape == b.shape:
            got = self.store.read_array_across_stacked("v", ["b", "a"])
            assert_same(got[0], b)
            assert_same(got[1], a)


TestResizeMachine = ResizeMachine.TestCase


def test_a_shrink_leaves_a_store_that_verifies_clean(tmp_path):
    """Chunks a shrink leaves beyond the grid are dead rows (docs/format.md): verify() used
    to report them as chunks outside the grid of their array."""
    store = atlas.Atlas.create(tmp_path / "s", block_size=4096)
    ds = store.create_dataset("a")
    ds.define_array("m", "float32", ["i"], [40], chunk_shape=[8], fill_value=float("nan"))
    ds.write_array("m", [0], np.arange(40, dtype=np.float32))
    store.flush()
    ds.resize_array("m", [10])
    store.flush()
    for i in range(10):  # flushes enough for merges to carry the dead rows along
        ds.write_array("m", [0], np.full(10, i, np.float32))
        store.flush()
    report = atlas.Atlas.open(tmp_path / "s").verify()
    assert report.ok, report.problems
    assert atlas.Atlas.open(tmp_path / "s").open_dataset("a").read_array("m").tolist() == \
        [9.0] * 10
