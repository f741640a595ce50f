"""Many small datasets: packed blocks, stacked writes, names resolved in bulk, commits that cost
what they change, and the merge that keeps files few. Checked against numpy models."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
from core_helpers import reopen

import atlas
from atlas.format.keys import ROOT_KEY


def _profiles(rng, n, levels=12):
    return (rng.standard_normal((n, levels)).astype(np.float32), rng.uniform(-90, 90, n))


def _flushed(path, values: np.ndarray) -> atlas.Atlas:
    """A new store at ``path`` whose datasets ``_names(len(values))`` hold the rows of
    ``values`` as ``v``, flushed."""
    store = atlas.Atlas.create(path)
    store.write_array_across_stacked("v", _names(len(values)), values)
    store.flush()
    return store


def _names(n, prefix="p"):
    return [f"{prefix}{i:05d}" for i in range(n)]


# -- stacked writes -----------------------------------------------------------------------------

def test_a_stacked_write_reads_back_row_by_row_and_stacked(store, store_path, rng):
    temp, lat = _profiles(rng, 300)
    names = _names(300)
    store.write_array_across_stacked("temp", names, temp, dims=["depth"],
                                     fill_value=float("nan"))
    store.write_array_across_stacked("lat", names, lat)
    store.flush()
    back = reopen(store_path)
    assert back.list_datasets() == names
    np.testing.assert_array_equal(back.read_array_across_stacked("temp"), temp)
    np.testing.assert_array_equal(back.read_array_across_stacked("lat", names[::-1]),
                                  lat[::-1])
    view = back.open_dataset(names[7])
    np.testing.assert_array_equal(view.read_array("temp"), temp[7])
    assert view.array_meta("temp")["dimension_names"] == ["depth"]
    assert view.array_meta("lat")["shape"] == []
    stats = view.array_stats("temp")
    assert stats == {"row_count": 12, "null_count": 0, "min": float(temp[7].min()),
                     "max": float(temp[7].max())}


def test_a_stacked_write_equals_the_per_dataset_api(tmp_path, rng):
    values = rng.integers(-50, 50, (40, 3, 4)).astype(np.int16)
    values[values == 7] = -1
    names = _names(40)
    a = atlas.Atlas.create(tmp_path / "a")
    a.write_array_across_stacked("v", names, values, dims=["y", "x"], fill_value=-1)
    a.flush()
    b = atlas.Atlas.create(tmp_path / "b")
    for name, row in zip(names, values):
        ds = b.create_dataset(name)
        ds.define_array("v", "int16", ["y", "x"], [3, 4], fill_value=-1)
        ds.write_array("v", [0, 0], row)
    b.flush()
    a, b = reopen(tmp_path / "a"), reopen(tmp_path / "b")
    for name in names:
        va, vb = a.open_dataset(name), b.open_dataset(name)
        np.testing.assert_array_equal(va.read_array("v"), vb.read_array("v"))
        assert va.array_stats("v") == vb.array_stats("v")
        assert va.array_meta("v") == vb.array_meta("v")


@pytest.mark.parametrize("kind", ["string", "zero-d-string", "timestamp", "chunked",
                                  "zero-d-int"])
def test_stacked_writes_of_every_kind_round_trip(store, store_path, rng, kind):
    n = 25
    names = _names(n)
    if kind == "string":
        data = np.array([[f"w{i}", "", "é"] for i in range(n)], dtype=object)
        store.write_array_across_stacked("s", names, data, dims=["k"], fill_value="?")
    elif kind == "zero-d-string":  # row i is a str, not an array
        data = np.array([f"p{i}" * (i % 3) for i in range(n)], dtype=object)
        store.write_array_across_stacked("s", names, data)
    elif kind == "timestamp":
        data = (np.datetime64("2024-01-01", "ns") + rng.integers(0, 10**12, (n, 4))
                .astype("m8[ns]"))
        store.write_array_across_stacked("s", names, data, dims=["t"])
    elif kind == "chunked":
        data = rng.standard_normal((n, 7, 5))
        store.write_array_across_stacked("s", names, data, dims=["y", "x"], chunk_shape=[3, 2])
    else:
        data = rng.integers(0, 2**31, n).astype(np.uint32)
        store.write_array_across_stacked("s", names, data)
    store.flush()
    back = reopen(store_path).read_array_across_stacked("s")
    if data.dtype == object:
        assert back.tolist() == data.tolist()
    else:
        np.testing.assert_array_equal(back, data)


def test_a_stacked_write_into_existing_datasets_overwrites_and_restats(store, store_path, rng):
    names = _names(10)
    store.write_array_across_stacked("v", names, np.zeros((10, 3)))
    store.flush()
    store.write_array_across_stacked("v", names[::2], np.ones((5, 3)) * 2)
    ds = store.create_dataset("extra")
    ds.define_array("v", "float64", ["dim_0"], [3])
    store.write_array_across_stacked("v", ["extra", "new"], np.full((2, 3), 5.0))
    store.flush()
    back = reopen(store_path)
    got = back.read_array_across_stacked("v")
    want = np.zeros((12, 3))
    want[0:10:2] = 2
    want[10:] = 5
    np.testing.assert_array_equal(got, want)
    assert back.open_dataset(names[0]).array_stats("v")["max"] == 2.0
    assert back.open_dataset(names[1]).array_stats("v")["max"] == 0.0


def test_stacked_and_per_dataset_writes_interleave_in_one_pending_segment(tmp_path, rng):
    # stacked rows are kept as tables beside the rows appended one by one: per-dataset writes
    # before, between and after stacked writes (in several batches each) of one array, read
    # before and after the flush, equal numpy; statistics follow the last write
    store = atlas.Atlas.create(str(tmp_path / "s"), block_size=4096)
    names = _names(300)
    want = {}

    def one(name, values):
        ds = store.open_dataset(name) if store.dataset_exists(name) else \
            store.create_dataset(name)
        if "v" not in ds.list_arrays():
            ds.define_array("v", "float64", ["dim_0"], [4])
        ds.write_array("v", [0], values)
        want[name] = values

    def stacked(picked, values):
        store.write_array_across_stacked("v", picked, values)
        want.update(zip(picked, values))

    one(names[0], rng.standard_normal(4))
    stacked(names[1:120], rng.standard_normal((119, 4)))  # several blocks, several batches
    one(names[120], rng.standard_normal(4))
    one(names[5], rng.standard_normal(4))  # a stacked row written again, one by one
    stacked(names[100:300], rng.standard_normal((200, 4)))  # over both kinds of rows
    one(names[150], np.full(4, 7.0))
    assert store.dataset_exists(names[299])
    for check in (store, None):
        if check is None:
            store.flush()
            check = reopen(tmp_path / "s")
        np.testing.assert_array_equal(check.read_array_across_stacked("v", names),
                                      np.stack([want[n] for n in names]))
        for name in (names[0], names[5], names[150], names[299]):
            np.testing.assert_array_equal(check.open_dataset(name).read_array("v"), want[name])
    assert reopen(tmp_path / "s").open_dataset(names[150]).array_stats("v")["max"] == 7.0
    assert reopen(tmp_path / "s").verify().problems == []


@pytest.mark.parametrize("then", ["flush", "stacked write, then a partial write"])
def test_a_read_that_joins_the_pending_rows_keeps_them_all(tmp_path, then):
    # rows appended one by one and rows of stacked writes are joined into one table when a
    # read needs it; the count of rows must cover both (found by a helper's random model:
    # the open block's rows were left without a block number at the flush, and the next
    # stacked write's rows were found at another dataset's row)
    store = atlas.Atlas.create(str(tmp_path / "s"), block_size=4096)
    store.write_array_across_stacked("w", ["a", "b"], np.array([[1, 1, 1], [2, 2, 2]], "i4"))
    store.open_dataset("a").write_array("w", [0], np.full(3, 3, "i4"))  # one by one
    store.write_array_across_stacked("w", ["c"], np.full((1, 3), 4, "i4"))
    np.testing.assert_array_equal(store.read_array_across_stacked("w", ["a"]), [[3, 3, 3]])
    want = {"a": [3, 3, 3], "b": [2, 2, 2], "c": [4, 4, 4]}
    if then != "flush":
        store.write_array_across_stacked("w", ["d"], np.full((1, 3), 5, "i4"))
        store.open_dataset("d").write_array("w", [1], np.array([9], "i4"))
        want["d"] = [5, 9, 5]
    for name, values in want.items():
        np.testing.assert_array_equal(store.open_dataset(name).read_array("w"), values)
    store.flush()
    back = reopen(tmp_path / "s")
    assert back.verify().problems == []
    for name, values in want.items():
        np.testing.assert_array_equal(back.open_dataset(name).read_array("w"), values)


def test_a_stacked_write_refuses_a_definition_that_does_not_match_naming_the_dataset(store):
    ds = store.create_dataset("have")
    ds.define_array("v", "float32", ["dim_0"], [3])
    with pytest.raises(TypeError, match="'have'"):
        store.write_array_across_stacked("v", ["new", "have"], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'have'"):
        store.write_array_across_stacked("v", ["have"], np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="'have'"):
        store.write_array_across_stacked("v", ["have"], np.zeros((1, 3), np.float32),
                                         dims=["depth"])


def test_stacked_writes_of_one_name_list_follow_deletes_and_new_datasets(store, store_path,
                                                                          rng):
    names = _names(20)
    store.write_array_across_stacked("a", names, np.arange(20.0))
    store.delete_dataset(names[3])  # the next write of the same list re-creates it
    store.create_dataset("other")
    store.write_array_across_stacked("b", names, np.arange(20.0) * 2)
    store.write_array_across_stacked("c", list(names), np.arange(20.0) * 3)
    store.flush()
    back = reopen(store_path)
    assert back.list_datasets() == [n for n in names if n != names[3]] + ["other", names[3]]
    np.testing.assert_array_equal(back.read_array_across_stacked("b", names),
                                  np.arange(20.0) * 2)
    np.testing.assert_array_equal(back.read_array_across_stacked("c", names),
                                  np.arange(20.0) * 3)
    assert back.open_dataset(names[3]).list_arrays() == ["b", "c"]
    np.testing.assert_array_equal(back.read_array_across_stacked("a", names[4:]),
                                  np.arange(4.0, 20.0))


@pytest.mark.parametrize(("names", "data", "error", "match"), [
    (["a", "a"], np.zeros((2, 3)), ValueError, "more than once"),
    (["keep", "keep"], np.zeros((2, 3)), ValueError, "more than once"),
    (["a", "b/c"], np.zeros((2, 3)), atlas.InvalidNameError, "separator"),
    (["a", "_x"], np.zeros((2, 3)), atlas.InvalidNameError, "reserved"),
    (["a", ""], np.zeros((2, 3)), atlas.InvalidNameError, "empty"),
    (["a", ".."], np.zeros((2, 3)), atlas.InvalidNameError, "'..'"),
    (["a", "b\x01"], np.zeros((2, 3)), atlas.InvalidNameError, "control"),
    (["b\x1f", "a"], np.zeros((2, 3)), atlas.InvalidNameError, "control"),
    (["a", "b\\c"], np.zeros((2, 3)), atlas.InvalidNameError, "separator"),
    (["_x", "a"], np.zeros((2, 3)), atlas.InvalidNameError, "reserved"),
    ([".", "a"], np.zeros((2, 3)), atlas.InvalidNameError, "'.'"),
    (["", "a"], np.zeros((2, 3)), atlas.InvalidNameError, "empty"),
    (["a", "x" * 256], np.zeros((2, 3)), atlas.InvalidNameError, "bytes"),
    (["é", "é" * 128], np.zeros((2, 3)), atlas.InvalidNameError, "bytes"),
    (["é", "_x"], np.zeros((2, 3)), atlas.InvalidNameError, "reserved"),
    (["é", "\ud800"], np.zeros((2, 3)), atlas.InvalidNameError, "surrogate"),
    (["a", "b\x00c"], np.zeros((2, 3)), atlas.InvalidNameError, "control"),  # splits the join
    (["a", 3], np.zeros((2, 3)), TypeError, "str"),
    (["a", b"b"], np.zeros((2, 3)), TypeError, "str"),
    (["a", None], np.zeros((2, 3)), TypeError, "str"),
    (["a", ["b"]], np.zeros((2, 3)), TypeError, "str"),
    ("ab", np.zeros((2, 3)), TypeError, "sequence"),
    (["a"], np.zeros((2, 3)), ValueError, "one row per name"),
    (["a", "b"], [[1, 2], [3, 4]], TypeError, "numpy"),
    (["a", "b"], np.zeros((2, 3), complex), TypeError, "complex"),
])
def test_bad_stacked_writes_raise_typed_errors_and_change_nothing(store, names, data, error,
                                                                   match):
    store.create_dataset("keep")
    with pytest.raises(error, match=match):
        store.write_array_across_stacked("v", names, data)
    assert store.list_datasets() == ["keep"]
    assert store.list_arrays() == []


def test_dims_that_do_not_match_the_rows_are_refused_saying_so(store):
    with pytest.raises(ValueError, match=r"dims \['x', 'y'\] name 2 dimensions; each row of "
                                         r"data has 1 \(shape \[4\]\)"):
        store.write_array_across_stacked("v", ["a"], np.zeros((1, 4)), dims=["x", "y"])
    assert store.list_datasets() == []


def test_a_refused_stacked_write_leaves_no_block_behind(store, store_path, rng):
    # its blocks are compressed while the names are checked: a refusal writes none of them
    store.write_array_across_stacked("v", ["a"], np.ones((1, 3)))
    store.flush()
    before = sorted(p.relative_to(store_path) for p in store_path.rglob("*.seg"))
    big = rng.standard_normal((50_000, 30))
    with pytest.raises(atlas.InvalidNameError):
        store.write_array_across_stacked("v", [f"n{i}" for i in range(49_999)] + ["_x"], big)
    with pytest.raises(ValueError, match="defined as float64"):
        store.write_array_across_stacked("v", ["a", "b"], np.ones((2, 4)))
    store.flush()
    assert sorted(p.relative_to(store_path) for p in store_path.rglob("*.seg")) == before
    assert reopen(store_path).list_datasets() == ["a"]


def test_stacked_writes_take_the_names_check_name_allows(store):
    # the bulk scan of the names lets through what the one-by-one check allows, at the limits
    names = ["x" * 255, "é" * 127, "a.b", "..a", "a_", "a b", "del\x7f", "ü_x", "..."]
    for name in names:
        assert atlas.names.check_name(name, "dataset") == name
    store.write_array_across_stacked("v", names, np.arange(len(names), dtype=np.int64))
    assert store.list_datasets() == names
    np.testing.assert_array_equal(store.read_array_across_stacked("v", names),
                                  np.arange(len(names)))


@pytest.mark.parametrize("as_given", [np.array, lambda names: list(np.array(names))],
                         ids=["array", "list-of-np.str_"])
def test_names_given_as_numpy_strings_are_kept_as_str(store, store_path, as_given):
    """np.str_ names (an array of names, or a list made of one) come back as plain str, before
    the flush as after it; so does a name given to create_dataset."""
    store.write_array_across_stacked("v", as_given(["a", "b"]), np.zeros((2, 3)))
    store.create_dataset(np.str_("c"))
    for names in (store.list_datasets(), (store.flush(), atlas.Atlas.open(store_path))[1]
                  .list_datasets()):
        assert names == ["a", "b", "c"]
        assert [type(name) for name in names] == [str, str, str]


def test_repeated_names_are_told_apart_from_names_whose_hashes_collide(store):
    # repeats are found among names of equal hashes: with every hash equal, distinct names
    # are still told apart and a repeat is still found
    from atlas.core._stacked import _has_repeated_names

    assert _has_repeated_names(["a", "b", "c", "b"], np.zeros(4, np.uint64))
    assert not _has_repeated_names(["a", "b", "c"], np.zeros(3, np.uint64))
    with pytest.raises(ValueError, match="'b' appears more than once"):
        store.write_array_across_stacked("v", ["a", "b", "c", "b"], np.arange(4.0))
    assert store.list_datasets() == []
    store.write_array_across_stacked("v", ["a", "b", "c"], np.arange(3.0))
    store.flush()
    assert store.list_datasets() == ["a", "b", "c"]
    np.testing.assert_array_equal(store.read_array_across_stacked("v"), np.arange(3.0))


def test_the_names_filter_of_a_flush_is_that_of_its_names_however_they_were_created(tmp_path):
    # a stacked write hands the hashes it checked repeats with to the flush's names filter;
    # mixed with datasets created one by one, deleted, and a failed stacked write, the filter
    # is still exactly bloom.build of the part's names
    from atlas.format import bloom
    from atlas.format.catalog import read_bloom

    store = atlas.Atlas.create(str(tmp_path / "s"))

    def filter_of_last_part():
        ref, footer = store._root.parts[-1], store._catalog._footers()[-1]
        return read_bloom(footer, footer.reader(
            lambda o, n: store._storage.get_range(ref.key, o, n, ref.size)), ref.key).tobytes()

    # only stacked writes (the filter made of their hashes), one of them refused
    store.write_array_across_stacked("v", [f"p{i}" for i in range(500)], np.arange(500.0))
    with pytest.raises(ValueError, match="appears more than once"):
        store.write_array_across_stacked("v", ["q1", "q2", "q1"], np.arange(3.0))
    store.write_array_across_stacked("v", [f"r{i}" for i in range(40)], np.arange(40.0))
    store.flush()
    names = [*(f"p{i}" for i in range(500)), *(f"r{i}" for i in range(40))]
    assert filter_of_last_part() == bloom.build(names).tobytes()
    # mixed with a dataset created one by one and a delete
    store.create_dataset("single")
    store.write_array_across_stacked("v", [f"s{i}" for i in range(30)], np.arange(30.0))
    store.delete_dataset("p7")
    store.flush()
    assert filter_of_last_part() == bloom.build(
        ["p7", "single", *(f"s{i}" for i in range(30))]).tobytes()
    again = atlas.Atlas.open(str(tmp_path / "s"))
    for name in ("single", "p0", "p499", "r39", "s29"):
        with pytest.raises(atlas.AlreadyExistsError):
            again.create_dataset(name)


def test_a_stacked_write_stores_the_names_it_joined_as_the_name_column(tmp_path):
    # the flush takes the name column from the bytes the stacked write joined its names into;
    # they are what encoding the names gives, and only one bulk create of exactly the pending
    # rows is taken that way
    from atlas.format.columns import encode_column

    store = atlas.Atlas.create(str(tmp_path / "s"))
    names = ["é", "日本", *(f"p{i}" for i in range(300)), "a b"]
    store.write_array_across_stacked("v", names, np.arange(len(names), dtype=float))
    pending = store._catalog.table(("datasets",)).log.table()
    assert store._catalog.created_name_bytes(pending) == encode_column(names, "txt")
    store.flush()
    assert atlas.Atlas.open(str(tmp_path / "s")).list_datasets() == names
    # two bulk creates, a dataset created one by one, a delete: encoded from the names
    store.write_array_across_stacked("v", ["q0", "q1"], np.arange(2.0))
    store.create_dataset("single")
    store.write_array_across_stacked("v", ["r0"], np.arange(1.0))
    store.delete_dataset("p7")
    assert store._catalog.created_name_bytes(
        store._catalog.table(("datasets",)).log.table()) is None
    store.flush()
    expected = [n for n in names if n != "p7"] + ["q0", "q1", "single", "r0"]
    assert atlas.Atlas.open(str(tmp_path / "s")).list_datasets() == expected


# -- names to rows ------------------------------------------------------------------------------

def test_bulk_reads_of_every_dataset_take_none_or_the_listed_names(store, rng):
    temp, _ = _profiles(rng, 50)
    names = _names(50)
    store.write_array_across_stacked("temp", names, temp)
    listed = store.list_datasets()
    np.testing.assert_array_equal(store.read_array_across_stacked("temp"), temp)
    np.testing.assert_array_equal(store.read_array_across_stacked("temp", listed), temp)
    assert store._catalog.is_all(listed)
    random.Random(1).shuffle(listed)  # a changed list is an ordinary list of names
    assert not store._catalog.is_all(listed)
    order = [names.index(n) for n in listed]
    np.testing.assert_array_equal(store.read_array_across_stacked("temp", listed), temp[order])
    later = store.list_datasets()
    store.create_dataset("new")  # a list from before a change no longer means "everything"
    assert not store._catalog.is_all(later)
    with pytest.raises(KeyError, match="'new'"):
        store.read_array_across_stacked("temp")  # "new" has no temp


def test_names_created_in_bulk_are_known_before_the_flush(store, store_path, rng):
    # the names of a stacked write reach the handle's name -> id dict only when it is next
    # used: each per-dataset call after it still sees them, in any order
    store.create_dataset("first")
    names = _names(50)
    values = rng.standard_normal((50, 2))
    store.write_array_across_stacked("v", names, values)
    with pytest.raises(atlas.AlreadyExistsError):
        store.create_dataset(names[7])
    assert store.dataset_exists(names[49]) and not store.dataset_exists("other")
    np.testing.assert_array_equal(store.open_dataset(names[3]).read_array("v"), values[3])
    store.delete_dataset(names[5])
    more = _names(60)[50:]
    store.write_array_across_stacked("v", more, rng.standard_normal((10, 2)))
    store.create_dataset(names[5])  # free again
    with pytest.raises(atlas.AlreadyExistsError):
        store.create_dataset(more[4])
    store.flush()
    expected = ["first", *names[:5], *names[6:], *more, names[5]]
    assert store.list_datasets() == expected == reopen(store_path).list_datasets()


def test_a_fresh_handle_finds_names_without_listing_them(store, store_path, rng):
    names = _names(200)
    store.write_array_across_stacked("v", names, rng.standard_normal((200, 2)))
    store.flush()
    store.delete_dataset(names[5])
    store.flush()
    fresh = reopen(store_path)
    with pytest.raises(atlas.AlreadyExistsError):
        fresh.create_dataset(names[9])
    fresh.create_dataset(names[5])  # deleted in a newer part: the name is free again
    fresh.delete_dataset(names[7])
    assert fresh._catalog._dids is None  # no dict of every name was needed
    fresh.flush()
    back = reopen(store_path)
    assert names[5] in back and names[7] not in back and len(back) == 199
    assert back.list_datasets() == [n for n in names if n not in (names[5], names[7])] + \
        [names[5]]


# -- packed blocks ------------------------------------------------------------------------------

def test_small_chunks_share_blocks_and_big_ones_get_their_own(store, store_path, rng):
    names = _names(500)
    store.write_array_across_stacked("lat", names, rng.uniform(size=500))
    small = store.create_dataset("big")
    small.define_array("field", "float64", ["y", "x"], [100, 100])
    small.write_array("field", [0, 0], rng.standard_normal((100, 100)))  # 80 KB: own block
    store.flush()
    back = reopen(store_path)
    lat = back._committed_index("lat")
    assert lat.rows == 500 and len(lat.block_offset) == 1  # 500 scalars, one block
    field = back._committed_index("field")
    assert field.rows == 1 and len(field.block_offset) == 1
    plan = back.read_plan("lat", names[10:12])
    assert plan.n_blocks == 1 and plan.n_chunks == 2
    assert [block[1:] for block in plan.blocks()] == [(500 * 8, "zstd", 8)]  # shuffled


def test_reads_see_pending_writes_in_open_and_sealed_blocks(tmp_path, rng):
    store = atlas.Atlas.create(tmp_path / "s", block_size=4096)  # blocks of 512 float64
    names = _names(2000)
    values = rng.standard_normal(2000)
    for name, value in zip(names, values):
        ds = store.create_dataset(name)
        ds.define_array("x", "float64", [], [])
        ds.write_array("x", [], np.asarray(value))
    # before any flush: sealed blocks in the pending file, the rest in the open block
    np.testing.assert_array_equal(store.read_array_across_stacked("x"), values)
    np.testing.assert_array_equal(store.open_dataset(names[-1]).read_array("x"), values[-1])
    store.flush()
    np.testing.assert_array_equal(reopen(tmp_path / "s").read_array_across_stacked("x"), values)


# -- commits that cost what they change ---------------------------------------------------------

def _bytes_of_files(path):
    return {p: p.stat().st_size for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("n", [20, 3000])
def test_appending_one_dataset_writes_a_few_kb_whatever_the_size(tmp_path, rng, n):
    path = tmp_path / "s"
    store = atlas.Atlas.create(path)
    names = _names(n)
    store.write_array_across_stacked("temp", names, rng.standard_normal((n, 100)).astype("f4"))
    store.write_array_across_stacked("lat", names, rng.uniform(size=n))
    store.flush()
    before = _bytes_of_files(path)
    fresh = reopen(path)
    ds = fresh.create_dataset("one more")
    ds.define_array("temp", "float32", ["dim_0"], [100])
    ds.write_array("temp", [0], np.ones(100, np.float32))
    ds.define_array("lat", "float64", [], [])
    ds.write_array("lat", [], np.asarray(1.0))
    ds.set_attribute("platform", "float7")
    fresh.flush()
    after = _bytes_of_files(path)
    written = sum(size for p, size in after.items() if before.get(p) != size)
    assert written < 8 * 1024  # root, one small part, two small segments
    assert not any(p.name == ROOT_KEY for p in after if p not in before)


# -- the merge every flush runs -----------------------------------------------------------------

def test_many_small_flushes_keep_files_few_and_reads_exact(tmp_path, rng):
    path = tmp_path / "s"
    store = atlas.Atlas.create(path)
    model = {}
    for i in range(70):
        ds = store.create_dataset(f"d{i:03d}")
        ds.define_array("v", "float64", ["x"], [3])
        model[ds.name] = rng.standard_normal(3)
        ds.write_array("v", [0], model[ds.name])
        ds.set_attribute("i", i)
        if i % 10 == 9:
            store.delete_dataset(f"d{i - 5:03d}")
            del model[f"d{i - 5:03d}"]
        store.flush()
    root = store._root
    assert len(root.parts) < 20 and len(root.segments["v"]) < 20  # 70 flushes
    for handle in (store, reopen(path)):
        assert handle.list_datasets() == list(model)
        np.testing.assert_array_equal(handle.read_array_across_stacked("v"),
                                      np.stack(list(model.values())))
        assert [handle.open_dataset(n).get_attribute("i") for n in model] == \
            [int(n[1:]) for n in model]
    assert reopen(path).verify().ok


def test_a_big_file_is_not_rewritten_with_the_small_ones_after_it(tmp_path, rng):
    """Merges take FANOUT files of one level: the big first segment stays as it was through
    flushes of small ones, which merge among themselves."""
    from atlas.core._maintain import FANOUT, level_of

    store = atlas.Atlas.create(tmp_path / "s")
    store.write_array_across_stacked("v", _names(4000), rng.standard_normal((4000, 100)))
    store.flush()
    (big,) = store._root.segments["v"]
    assert level_of(big.size) >= 1
    for i in range(3 * FANOUT):
        store.write_array_across_stacked("v", [f"x{i}"], rng.standard_normal((1, 100)))
        store.flush()
        refs = store._root.segments["v"]
        assert refs[0] == big and len(refs) <= 1 + FANOUT
    assert all(ref.level == 0 for ref in store._root.segments["v"][1:])
    assert len(store._root.segments["v"]) < 1 + FANOUT  # the small ones did merge


def test_a_reader_on_an_older_root_reads_through_merges(tmp_path, rng):
    path = tmp_path / "s"
    store = _flushed(path, rng.standard_normal((5, 2)))
    reader = reopen(path)
    want = reader.read_array_across_stacked("v").copy()
    reader._blocks.clear()
    for i in range(40):  # enough flushes to merge the files the reader's root lists
        store.write_array_across_stacked("v", [f"x{i}"], rng.standard_normal((1, 2)))
        store.flush()
    assert store._root.retired  # replaced files stay for the grace period
    np.testing.assert_array_equal(reader.read_array_across_stacked("v", _names(5)), want)


def test_appending_to_a_fresh_handle_reads_no_names_of_the_store(store, store_path, rng):
    names = _names(3000)
    store.write_array_across_stacked("v", names, rng.standard_normal((3000, 2)))
    store.flush()
    fresh = reopen(store_path)
    fresh.create_dataset("brand new")  # the parts' names filters say it is not there
    assert fresh._catalog._name_blobs == {} and fresh._catalog._dids is None
    with pytest.raises(atlas.AlreadyExistsError):
        fresh.create_dataset(names[1234])  # "maybe": settled by searching the names
    fresh.flush()
    assert "brand new" in reopen(store_path)


def test_deleting_a_dataset_loads_no_array_table_and_drops_its_unflushed_chunks(tmp_path, rng):
    path = tmp_path / "s"
    _flushed(path, rng.standard_normal((50, 3)))
    fresh = reopen(path)
    fresh.delete_dataset(_names(50)[7])  # nothing pending: no array table is read
    assert fresh._catalog._array_tables == {}
    fresh.open_dataset(_names(50)[8]).write_array("v", [0], np.ones(3))  # unflushed
    fresh.delete_dataset(_names(50)[8])  # its dirty chunk goes with it
    again = fresh.create_dataset(_names(50)[8])
    again.define_array("v", "float64", ["i"], [3])
    fresh.flush()
    back = reopen(path)
    assert _names(50)[7] not in back and back.open_dataset(_names(50)[8]).read_array(
        "v").tolist() == [0.0, 0.0, 0.0]
    assert len(back.list_datasets()) == 49


def test_repeated_names_are_found_among_few_names_of_a_big_store(store, rng):
    """A stacked write of a few existing names checks repeats without a mark per dataset."""
    names = _names(400)
    store.write_array_across_stacked("v", names, np.zeros(400))
    with pytest.raises(ValueError, match="'p00007' appears more than once"):
        store.write_array_across_stacked("v", ["p00003", "p00007", "p00007"], np.ones(3))
    store.write_array_across_stacked("v", ["p00003", "p00007"], np.ones(2))
    got = store.read_array_across_stacked("v", ["p00003", "p00007", "p00008"])
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.0])


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_bulk_reads_decode_blocks_in_place_or_scatter_them_and_agree_with_numpy(tmp_path, rng,
                                                                             codec, monkeypatch):
    """A stacked read of every dataset decodes a block that is one stretch of the output
    straight into it (zstd; other codecs are copied there) and scatters the others: chunks
    of two per dataset, written masks between chunks, windows, names out of order, repeats,
    and a dataset rewritten after the others (its chunk alone in a later block)."""
    from atlas.core import _read

    seen = []  # blocks planned straight into the output, per bulk read

    def spy(*args):
        found = direct(*args)
        seen.append(int(found.sum()))
        return found

    direct = _read._direct_blocks
    monkeypatch.setattr(_read, "_direct_blocks", spy)
    n = 3000  # more than 64 blocks of 4 KiB per array: reads that bypass the block cache
    store = atlas.Atlas.create(tmp_path / "s", codec, block_size=4096)
    names = _names(n)
    one = rng.standard_normal((n, 24)).astype(np.float32)
    two = rng.standard_normal((n, 40))
    store.write_array_across_stacked("one", names, one, fill_value=float("nan"))
    store.write_array_across_stacked("two", names, two, chunk_shape=[20])
    for i in range(0, n, 7):  # datasets whose "part" is half written: a mask after the values
        view = store.open_dataset(names[i])
        view.define_array("part", "int32", ["k"], [10])
        view.write_array("part", [0], np.arange(5, dtype=np.int32) + i)
    store.flush()
    one[5] = rng.standard_normal(24).astype(np.float32)
    store.open_dataset(names[5]).write_array("one", [0], one[5])
    store.flush()
    for handle in (store, atlas.Atlas.open(tmp_path / "s")):
        assert np.array_equal(handle.read_array_across_stacked("one"), one)
        assert np.array_equal(handle.read_array_across_stacked("two"), two)
        assert np.array_equal(handle.read_array_across_stacked("two", start=[3], shape=[30]),
                              two[:, 3:33])
        picked = [names[i] for i in (9, 2, 2, 299, 0)]
        assert np.array_equal(handle.read_array_across_stacked("one", picked),
                              one[[9, 2, 2, 299, 0]])
        part_names = names[::7]
        expected = np.zeros((len(part_names), 10), np.int32)
        expected[:, :5] = np.arange(5) + np.arange(0, n, 7)[:, None]
        assert np.array_equal(handle.read_array_across_stacked("part", part_names), expected)
        out = np.full_like(two, 7.0)
        handle.read_array_across_stacked("two", out=out)
        assert np.array_equal(out, two)
    assert max(seen) > 64 and min(seen) == 0, seen  # both ways were taken


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8"])
def test_a_stacked_write_records_each_rows_statistics_across_many_blocks(tmp_path, rng, dtype):
    # the workers compute each row's nulls, valid count and extremes while they compress its
    # block; 4 KiB blocks make many blocks and several batches of them; rows all NaN, partly
    # NaN and free of NaN (floats); the catalog after a reopen equals numpy's per-row figures
    store = atlas.Atlas.create(str(tmp_path / "s"), block_size=4096)
    n, width = 700, 37
    if dtype.startswith("float"):
        values = rng.standard_normal((n, width)).astype(dtype)
        values[rng.random((n, width)) < 0.2] = np.nan
        values[::9] = np.nan  # rows with no valid value
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, (n, width), endpoint=True).astype(dtype)
    names = _names(n)
    store.write_array_across_stacked("v", names, values)
    store.flush()
    table = reopen(tmp_path / "s").catalog(arrays=["v"])
    nulls = np.isnan(values).sum(axis=1) if values.dtype.kind == "f" else np.zeros(n, int)
    valid = width - nulls
    assert table.index.tolist() == names
    np.testing.assert_array_equal(table["v.nulls"].to_numpy(), nulls)
    np.testing.assert_array_equal(table["v.valid"].to_numpy(), valid)
    some = valid > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmin of a row of NaN only
        lows, highs = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    np.testing.assert_array_equal(table["v.min"].to_numpy()[some].astype(dtype), lows[some])
    np.testing.assert_array_equal(table["v.max"].to_numpy()[some].astype(dtype), highs[some])
    assert table["v.min"][~some].isna().all() and table["v.max"][~some].isna().all()


def test_pending_writes_to_many_array_names_hold_memory_by_what_they_wrote(store, store_path):
    """Every array name's open block was a block_size buffer from its first write: 300 arrays
    of 32 bytes each held 300 MiB (2,000 held 2 GB; block_size=2**30 1 GiB per name)."""
    import tracemalloc

    view = store.create_dataset("wide")
    tracemalloc.start()
    try:
        for i in range(300):
            view.define_array(f"a{i}", "int64", ["n"], [4])
            view.write_array(f"a{i}", [0], np.arange(4, dtype=np.int64) + i)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    store.flush()
    back = reopen(store_path).open_dataset("wide")
    for i in (0, 150, 299):
        assert back.read_array(f"a{i}").tolist() == [i, i + 1, i + 2, i + 3]
