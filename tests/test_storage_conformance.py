"""One conformance suite for every storage backend.

``StorageConformance`` holds the tests; each subclass supplies ``location`` (what a user passes
to ``Atlas.create``/``Atlas.open``): a local path, an obstore ``LocalStore``, a ``MemoryStore``
and an ``S3Store`` on a real S3 endpoint (the moto server). Expected values come from numpy.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from _s3 import moto_s3, s3_store  # noqa: F401  (fixtures)

import atlas
from atlas.format import root as root_format
from atlas.format.keys import ROOT_KEY as MANIFEST_KEY
from atlas.storage import CountingStorage, FaultyStorage, InjectedFault, open_storage

NAMES = [f"ds{i:02d}" for i in range(6)]
SHAPE = (12, 10)
CHUNKS = (5, 4)


def field(i: int, generation: int = 0) -> np.ndarray:
    """The reference content of dataset i's "temperature" after a given flush."""
    rng = np.random.default_rng(100 * generation + i)
    return rng.standard_normal(SHAPE).astype(np.float32)


def snapshot(location) -> dict:
    """Everything a fresh handle sees: {dataset: (attrs, {array: values})}."""
    store = atlas.Atlas.open(location)
    out = {}
    for name in store.list_datasets():
        ds = store.open_dataset(name)
        out[name] = (ds.attributes(), {a: ds.read_array(a) for a in ds.list_arrays()})
    return out


def assert_same_snapshot(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name][0] == expected[name][0], name
        assert sorted(actual[name][1]) == sorted(expected[name][1]), name
        for array, values in expected[name][1].items():
            np.testing.assert_array_equal(actual[name][1][array], values, err_msg=name)


def fill_store(store: atlas.Atlas, names=NAMES, generation: int = 0) -> dict:
    """Define and write "temperature" in each dataset; returns the numpy reference."""
    ref = {}
    for i, name in enumerate(names):
        ds = store.create_dataset(name)
        ds.define_array("temperature", "float32", ["y", "x"], SHAPE, chunk_shape=CHUNKS,
                        fill_value=np.nan)
        ds.write_array("temperature", [0, 0], field(i, generation))
        ds.set_attribute("index", i)
        ref[name] = field(i, generation)
    return ref


class StorageConformance:
    """The behaviour every backend must show. Subclasses override the ``location`` fixture."""

    @pytest.fixture
    def location(self):
        raise NotImplementedError

    # -- create / open -------------------------------------------------------------------------

    def test_created_store_reopens_empty(self, location):
        atlas.Atlas.create(location)
        store = atlas.Atlas.open(location)
        assert store.list_datasets() == []
        assert store.generation == 0

    def test_creating_over_an_existing_store_raises(self, location):
        atlas.Atlas.create(location)
        with pytest.raises(atlas.AlreadyExistsError):
            atlas.Atlas.create(location)

    def test_opening_where_no_store_is_raises_store_not_found(self, location):
        with pytest.raises(atlas.StoreNotFoundError):
            atlas.Atlas.open(location)

    # -- write / flush / reopen / read ---------------------------------------------------------

    def test_nothing_is_visible_before_flush(self, location):
        writer = atlas.Atlas.create(location)
        fill_store(writer, NAMES[:2])
        assert atlas.Atlas.open(location).list_datasets() == []
        writer.flush()
        assert atlas.Atlas.open(location).list_datasets() == NAMES[:2]

    def test_arrays_attributes_and_stats_survive_reopen(self, location):
        with atlas.Atlas.create(location) as store:
            ds = store.create_dataset("cast")
            ds.define_array("depth", "int32", ["z"], [7], chunk_shape=[3], fill_value=-1)
            ds.write_array("depth", [1], np.array([5, -1, 7, 2], np.int32))
            ds.define_array("label", "string", ["z"], [4], chunk_shape=[2], fill_value="?")
            ds.write_array("label", [0], np.array(["a", "bé"], dtype=object))
            ds.define_array("t", "float64", ["y", "x"], [9, 9], chunk_shape=[4, 4],
                            fill_value=np.nan)
            ds.write_array("t", [2, 3], np.arange(12.0).reshape(3, 4))
            ds.set_attribute("station", "W1")
            ds.set_attribute("gain", np.float32(0.5))
            ds.set_array_attribute("t", "units", "K")
        ds = atlas.Atlas.open(location).open_dataset("cast")
        np.testing.assert_array_equal(ds.read_array("depth"),
                                      np.array([-1, 5, -1, 7, 2, -1, -1], np.int32))
        assert ds.read_array("label").tolist() == ["a", "bé", "?", "?"]
        expected_t = np.full((9, 9), np.nan)
        expected_t[2:5, 3:7] = np.arange(12.0).reshape(3, 4)
        np.testing.assert_array_equal(ds.read_array("t"), expected_t)
        np.testing.assert_array_equal(ds.read_array("t", [1, 2], [5, 3]), expected_t[1:6, 2:5])
        assert ds.get_attribute("station") == "W1"
        assert ds.get_attribute("gain") == np.float32(0.5)
        assert ds.get_array_attribute("t", "units") == "K"
        depth = np.array([-1, 5, -1, 7, 2, -1, -1])
        stats = ds.array_stats("depth")
        assert stats["row_count"] == depth.size
        assert stats["null_count"] == int((depth == -1).sum())
        assert (stats["min"], stats["max"]) == (depth[depth != -1].min(), depth.max())

    def test_windows_read_back_like_numpy_slices(self, location):
        with atlas.Atlas.create(location) as store:
            ref = fill_store(store, NAMES[:1])
        ds = atlas.Atlas.open(location).open_dataset(NAMES[0])
        full = ref[NAMES[0]]
        for start, shape in [((0, 0), SHAPE), ((4, 3), (3, 2)), ((11, 9), (1, 1)),
                             ((2, 0), (10, 10)), ((0, 5), (0, 3))]:
            window = tuple(slice(s, s + n) for s, n in zip(start, shape))
            np.testing.assert_array_equal(ds.read_array("temperature", start, shape),
                                          full[window])

    # -- bulk ----------------------------------------------------------------------------------

    def test_stacked_read_across_flushes_matches_numpy(self, location):
        store = atlas.Atlas.create(location)
        ref = fill_store(store)
        store.flush()
        # a second flush overwrites a block of every other dataset
        for i, name in enumerate(NAMES[::2]):
            patch = np.full((4, 5), 100.0 + i, np.float32)
            store.open_dataset(name).write_array("temperature", [3, 2], patch)
            ref[name][3:7, 2:7] = patch
        store.flush()
        reader = atlas.Atlas.open(location)
        for start, shape in [(None, None), ((2, 1), (6, 7))]:
            got = reader.read_array_across_stacked("temperature", NAMES, start, shape)
            window = (slice(None),) * 2 if start is None else \
                tuple(slice(s, s + n) for s, n in zip(start, shape))
            np.testing.assert_array_equal(got, np.stack([ref[n][window] for n in NAMES]))
        listed = reader.read_array_across("temperature", NAMES[::-1])
        for name, values in zip(NAMES[::-1], listed):
            np.testing.assert_array_equal(values, ref[name])

    def test_stacked_read_requests_only_its_files_a_few_times_each(self, location):
        store = atlas.Atlas.create(location)
        fill_store(store)
        store.flush()
        for name in NAMES[1:4]:  # a second segment touching three datasets
            store.open_dataset(name).write_array("temperature", [0, 0],
                                                 np.zeros((2, 2), np.float32))
        store.flush()
        other = store.create_dataset("other")  # a second array name: never read below
        other.define_array("salinity", "float32", ["x"], [8])
        other.write_array("salinity", [0], np.ones(8, np.float32))
        store.flush()
        root = atlas.Atlas.open(location)._root
        segments = {ref.key for ref in root.segments["temperature"]}
        parts = {ref.key for ref in root.parts}
        assert len(segments) == 2 and len(parts) == 3

        counting = CountingStorage(open_storage(location))
        reader = atlas.Atlas.open(counting)
        assert dict(counting.counts) == {"read_manifest": 1}  # opening = one GET
        reader.read_array_across_stacked("temperature", NAMES)
        # first read: the root, one tail read per catalog part (footer and the small sections
        # together), per segment one tail read (footer and index) and one get_ranges of blocks
        assert counting.requests <= 1 + len(parts) + 2 * len(segments)
        assert set(counting.keys_read) - {MANIFEST_KEY} == segments | parts
        counting.reset()
        reader.read_array_across_stacked("temperature", NAMES)
        assert counting.counts["list"] == 0
        assert counting.requests <= len(segments)  # blocks, unless still in the block cache
        assert set(counting.keys_read) <= segments

    def test_xarray_datasets_round_trip_and_stack(self, location):
        import xarray as xr
        originals = {}
        with atlas.Atlas.create(location) as store:
            for i, name in enumerate(NAMES[:3]):
                ds = xr.Dataset(
                    {"temperature": (("time", "x"), field(i)[:6, :8], {"units": "K"})},
                    coords={"time": np.arange(6).astype("M8[h]").astype("M8[ns]"),
                            "x": np.linspace(0, 1, 8, dtype="f4")},
                    attrs={"id": i})
                store.add_xr_dataset(ds, name, chunks={"temperature": (3, 8)})
                originals[name] = ds
        reader = atlas.Atlas.open(location)
        got = reader.to_xarray(NAMES[1])
        assert got["temperature"].chunks == ((3, 3), (8,))  # lazy, one task per stored chunk
        xr.testing.assert_identical(got.load(), originals[NAMES[1]])
        stacked = reader.to_xarray_many(NAMES[:3])
        np.testing.assert_array_equal(
            stacked["temperature"].values,
            np.stack([originals[n]["temperature"].values for n in NAMES[:3]]))
        assert list(stacked["dataset"].values) == NAMES[:3]

    # -- compact / delete ----------------------------------------------------------------------

    def test_compact_keeps_live_data_and_removes_retired_segments(self, location):
        store = atlas.Atlas.create(location)
        ref = fill_store(store)
        store.flush()
        store.open_dataset(NAMES[0]).write_array("temperature", [0, 0],
                                                 np.ones((3, 3), np.float32))
        ref[NAMES[0]][:3, :3] = 1
        store.delete_dataset(NAMES[1])
        del ref[NAMES[1]]
        store.flush()
        before = snapshot(location)
        store.compact(grace=0)  # delete the replaced files at once
        after = snapshot(location)
        assert_same_snapshot(after, before)
        assert list(after) == list(ref)
        for name, values in ref.items():
            np.testing.assert_array_equal(after[name][1]["temperature"], values)
        keys = [k for k, _s, _m in open_storage(location).list("segments")]
        assert keys == [ref.key for ref in atlas.Atlas.open(location)._root.segments[
            "temperature"]]
        assert atlas.Atlas.open(location).verify().ok

    def test_keys_are_the_listed_keys_without_sizes(self, location):
        with atlas.Atlas.create(location) as store:
            fill_store(store, NAMES[:3])
        storage = open_storage(location)
        for prefix in ("", "versions", "segments", "nothing_here"):
            assert sorted(storage.keys(prefix)) == sorted(k for k, _s, _m in
                                                          storage.list(prefix))
        assert len(storage.keys("versions")) == 2  # the empty store's commit and this one

    def test_deleted_dataset_stays_deleted_after_reopen(self, location):
        with atlas.Atlas.create(location) as store:
            fill_store(store, NAMES[:3])
        with atlas.Atlas.open(location) as store:
            store.delete_dataset(NAMES[1])
            assert store.list_datasets() == [NAMES[0], NAMES[2]]
        reopened = atlas.Atlas.open(location)
        assert reopened.list_datasets() == [NAMES[0], NAMES[2]]
        with pytest.raises(KeyError):
            reopened.open_dataset(NAMES[1])

    # -- conflicts -----------------------------------------------------------------------------

    def test_second_writer_merges_or_conflicts_and_nothing_is_overwritten(self, location):
        atlas.Atlas.create(location)
        first, second = atlas.Atlas.open(location), atlas.Atlas.open(location)
        ref = fill_store(first, ["mine"])
        theirs = fill_store(second, ["theirs"], generation=1)
        first.flush()
        second.flush()  # another dataset: re-applied on top of the first writer's commit
        seen = snapshot(location)
        assert list(seen) == ["mine", "theirs"]
        np.testing.assert_array_equal(seen["mine"][1]["temperature"], ref["mine"])
        np.testing.assert_array_equal(seen["theirs"][1]["temperature"], theirs["theirs"])
        first, second = atlas.Atlas.open(location), atlas.Atlas.open(location)
        first.delete_dataset("theirs")
        second.open_dataset("theirs").set_attribute("note", 1)
        first.flush()
        with pytest.raises(atlas.ConflictError, match="deleted dataset 'theirs'"):
            second.flush()
        assert list(snapshot(location)) == ["mine"]

    def test_commit_from_a_stale_version_conflicts(self, location):
        atlas.Atlas.create(location)
        storage = open_storage(location)
        data, token = storage.read_manifest(MANIFEST_KEY)
        with pytest.raises(atlas.ConflictError):
            storage.commit(MANIFEST_KEY, b"not a manifest", None)  # "create" over a store
        newer = root_format.decode(data, "test").successor()
        storage.commit(MANIFEST_KEY, newer.encode(), token)  # from the current version: accepted
        with pytest.raises(atlas.ConflictError):
            storage.commit(MANIFEST_KEY, data, token)  # from the replaced version: refused
        assert storage.read_manifest(MANIFEST_KEY)[0] == newer.encode()
        assert atlas.Atlas.open(location).generation == 1

    # -- read-only -----------------------------------------------------------------------------

    def test_read_only_handle_refuses_writes_before_any_request(self, location):
        with atlas.Atlas.create(location) as store:
            fill_store(store, NAMES[:1])
        counting = CountingStorage(open_storage(location, read_only=True))
        store = atlas.Atlas.open(counting)
        view = store.open_dataset(NAMES[0])  # reads the catalog
        counting.reset()
        with pytest.raises(atlas.ReadOnlyError):
            store.create_dataset("new")
        with pytest.raises(atlas.ReadOnlyError):
            view.write_array("temperature", [0, 0], np.zeros((1, 1), np.float32))
        with pytest.raises(atlas.ReadOnlyError):
            store.delete_dataset(NAMES[0])
        for call in (lambda s: s.put("x", b"1"), lambda s: s.delete("x"),
                     lambda s: s.spill_path("segments/x.seg"),
                     lambda s: s.commit(MANIFEST_KEY, b"", None)):
            with pytest.raises(atlas.ReadOnlyError):
                call(counting)
        assert counting.requests == 0
        np.testing.assert_array_equal(store.open_dataset(NAMES[0]).read_array("temperature"),
                                      field(0))

    # -- pickling ------------------------------------------------------------------------------

    def test_pickled_handles_reopen_the_same_store(self, location):
        with atlas.Atlas.create(location) as store:
            ref = fill_store(store, NAMES[:3])
        handle = pickle.loads(pickle.dumps(atlas.Atlas.open(location)))
        view = pickle.loads(pickle.dumps(handle.open_dataset(NAMES[2])))
        np.testing.assert_array_equal(view.read_array("temperature"), ref[NAMES[2]])
        np.testing.assert_array_equal(
            handle.read_array_across_stacked("temperature", NAMES[:3]),
            np.stack([ref[n] for n in NAMES[:3]]))

    # -- faults --------------------------------------------------------------------------------

    def test_failed_flush_keeps_previous_commit_and_retry_succeeds(self, location):
        atlas.Atlas.create(location)
        faulty = FaultyStorage(open_storage(location), rate=0.4, seed=7,
                               ops=("publish", "commit"))
        store = atlas.Atlas.open(faulty)
        committed = snapshot(location)
        for round_ in range(4):
            fill_store(store, [f"r{round_}-{i}" for i in range(2)], generation=round_)
            for _attempt in range(30):
                try:
                    store.flush()
                    break
                except InjectedFault:
                    assert_same_snapshot(snapshot(location), committed)
            else:
                pytest.fail("flush never succeeded")
            now = snapshot(location)
            assert list(now) == list(committed) + [f"r{round_}-0", f"r{round_}-1"]
            np.testing.assert_array_equal(now[f"r{round_}-1"][1]["temperature"],
                                          field(1, round_))
            committed = now
        assert {op for op, _key in faulty.injected} == {"publish", "commit"}
        faulty.enabled = False
        assert store.verify().ok


class TestLocalPath(StorageConformance):
    @pytest.fixture
    def location(self, tmp_path):
        return tmp_path / "store"


class TestObstoreLocalStore(StorageConformance):
    @pytest.fixture
    def location(self, tmp_path):
        from obstore.store import LocalStore

        return LocalStore(tmp_path / "store", mkdir=True)


class TestObstoreMemoryStore(StorageConformance):
    @pytest.fixture
    def location(self):
        from obstore.store import MemoryStore

        return MemoryStore()


class TestS3(StorageConformance):
    @pytest.fixture
    def location(self, s3_store):
        return s3_store
