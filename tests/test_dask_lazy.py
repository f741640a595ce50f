"""Lazy reads: chunked variables come back dask-backed with one task per on-disk chunk; building
the Dataset reads no array data and computing one chunk reads exactly that chunk (counted at the
storage layer); the graphs pickle small and run on a ``dask.distributed`` cluster of processes."""

from __future__ import annotations

import pickle
import threading

import dask
import numpy as np
import pytest
import xarray as xr

import atlas
from atlas.storage import LocalStorage, StorageWrapper


class CountingStorage(StorageWrapper):
    """Records every read that reaches the storage: (operation, key, number of ranges, bytes)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.lock = threading.Lock()
        self.reads: list[tuple[str, str, int, int]] = []

    def _request(self, op, key, call, *args):
        result = call(*args)
        if op in ("get", "get_range", "get_ranges"):
            ranges = result if op == "get_ranges" else [result]
            with self.lock:
                self.reads.append((op, key, len(ranges), sum(len(r) for r in ranges)))
        return result

    def reads_of(self, array: str) -> list[tuple[str, str, int, int]]:
        keys = {ref.key for ref in atlas.Atlas.open(self.inner)._root.segments.get(array, [])}
        return [r for r in self.reads if r[1] in keys]

    def chunk_fetches(self, array: str) -> list[tuple[str, str, int, int]]:
        """The data path fetches blocks with get_ranges (footers come by get_range)."""
        return [r for r in self.reads_of(array) if r[0] == "get_ranges"]


def _block_sizes(path, array: str) -> list[int]:
    """Stored sizes of the blocks of ``array``'s segments."""
    store = atlas.Atlas.open(path)
    return store._committed_index(array).block_stored.tolist()


SHAPE, CHUNKS = (6, 8, 10), (2, 4, 5)


def gridded(rng) -> xr.Dataset:
    return xr.Dataset(
        {"temperature": (("time", "lat", "lon"), rng.normal(size=SHAPE),
                         {"units": "K"}),
         "lag": (("time",), np.arange(6).astype("timedelta64[s]")),
         "label": (("lat",), np.array([f"row{i}" for i in range(8)], dtype=object)),
         "mean": ((), 1.5),
         "mask": (("lat", "lon"), rng.integers(0, 9, (8, 10)).astype(np.uint8))},
        coords={"time": np.arange(6, dtype=np.int64), "lat": np.linspace(0, 1, 8),
                "lon": np.linspace(0, 2, 10)},
        attrs={"source": "test"})


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.fixture
def written(tmp_path, rng):
    """A flushed store (codec none: a chunk's stored bytes are its values) and the dataset."""
    ds = gridded(rng)
    with atlas.Atlas.create(tmp_path / "store", codec="none") as store:
        store.add_xr_dataset(ds, "d", chunks={"temperature": list(CHUNKS), "lag": [4],
                                              "label": [3]})
    return tmp_path / "store", ds


def test_chunked_variables_are_dask_arrays_mirroring_the_chunk_grid(written):
    path, ds = written
    back = atlas.Atlas.open(path).to_xarray("d")
    data = back["temperature"].data
    assert isinstance(data, dask.array.Array)
    assert data.chunks == ((2, 2, 2), (4, 4), (5, 5))
    graph = dict(data.__dask_graph__())
    assert len(graph) == 3 * 2 * 2  # one task per on-disk chunk, nothing else
    assert back["lag"].chunks == ((4, 2),) and back["label"].chunks == ((3, 3, 2),)
    for name in ("mean", "mask", "lat", "lon", "time"):  # full-shape, 0-D, coordinates
        assert isinstance(back[name].variable._data, np.ndarray) or name in back.indexes, name
    xr.testing.assert_identical(back.compute(), ds)
    assert back["lag"].dtype == ds["lag"].dtype and back["label"].dtype == object


def test_building_the_dataset_reads_no_data_and_one_chunk_reads_exactly_one(written):
    path, ds = written
    counting = CountingStorage(LocalStorage(path))
    store = atlas.Atlas.open(counting)
    back = store.to_xarray("d")
    assert counting.reads_of("temperature") == []
    part = back["temperature"][2:4, 4:8, 0:5].compute()
    np.testing.assert_array_equal(part.values, ds["temperature"].values[2:4, 4:8, 0:5])
    fetches = counting.chunk_fetches("temperature")
    (block,) = _block_sizes(path, "temperature")  # the small chunks share one block
    assert [(f[2], f[3]) for f in fetches] == [(1, block)]  # one chunk: its block, once
    # windows inside that block are served from the decoded block: no more requests
    back["temperature"][0, 1:3, 6:9].compute()
    back["temperature"][0:2, 0:4, 3:7].compute()
    assert len(counting.chunk_fetches("temperature")) == 1


def test_lazy_reads_in_the_writing_process_see_unflushed_writes(tmp_path, rng):
    ds = gridded(rng)
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d", chunks={"temperature": list(CHUNKS)})
    back = store.to_xarray("d")
    assert isinstance(back["temperature"].data, dask.array.Array)
    xr.testing.assert_identical(back.compute(), ds)


@pytest.mark.parametrize("how", ["to_xarray", "engine", "to_xarray_many"])
def test_a_lazy_dataset_never_reads_another_dataset_given_its_name(tmp_path, how):
    # deleted and re-created under its name, the dataset a lazy read was made of is gone: its
    # tasks raise, they do not read the new one; written back under its own name after a
    # delete, it raised where it read itself half-written and stored zeros
    ds = xr.Dataset({"v": (("t", "y"), np.arange(400.0).reshape(40, 10))})
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_xr_dataset(ds, "e", chunks={"v": [10, 10]})

    def lazy_of_e(store):
        if how == "to_xarray":
            return store.to_xarray("e")
        if how == "to_xarray_many":
            return store.to_xarray_many(["e"]).isel(dataset=0, drop=True)
        return xr.open_dataset(store, engine="atlas", group="e", chunks={})

    store = atlas.Atlas.open(tmp_path / "s")
    lazy = lazy_of_e(store)
    store.delete_dataset("e")
    store.add_xr_dataset(-ds, "e", chunks={"v": [10, 10]})
    with pytest.raises(atlas.DatasetNotFoundError, match="deleted since this lazy array"):
        lazy["v"].values
    store = atlas.Atlas.open(tmp_path / "s")  # (the other handle's changes never flushed)
    lazy = lazy_of_e(store)
    store.delete_dataset("e")
    with pytest.raises(atlas.DatasetNotFoundError):
        store.add_xr_dataset(lazy, "e")
    assert "e" not in store  # the failed write left nothing behind
    # nothing flushed: the stored "e" is the first one
    xr.testing.assert_identical(atlas.Atlas.open(tmp_path / "s").to_xarray("e").load(), ds)


@pytest.mark.parametrize("how", ["to_xarray", "engine", "to_xarray_many"])
def test_a_lazy_read_of_an_array_deleted_since_raises_array_not_found(tmp_path, how):
    """.values gave an empty array, .compute() xarray's shape error, engine="atlas" a
    TypeError on None: read_array's None for a missing array went through."""
    ds = xr.Dataset({"v": (("t", "y"), np.arange(48.0).reshape(8, 6))})
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_xr_dataset(ds, "e", chunks={"v": [4, 6]})
    store = atlas.Atlas.open(tmp_path / "s")
    lazy = _lazy_of(store, "e", how)
    store.open_dataset("e").delete_array("v")
    for read in (lambda: lazy["v"].values, lambda: lazy["v"].compute()):
        with pytest.raises(atlas.ArrayNotFoundError,
                           match="'v' of dataset 'e'|'e' has no array 'v'"):
            read()


@pytest.mark.parametrize("how", ["to_xarray", "engine", "to_xarray_many"])
@pytest.mark.parametrize("flushed", [False, True])
def test_a_lazy_read_of_an_array_defined_again_with_another_dtype_raises(tmp_path, how,
                                                                         flushed):
    """The lazy array of float64 gave the int16 values of the array defined in its place
    (against its own dtype: dask's contract), or cast them to float64 (to_xarray_many)."""
    ds = xr.Dataset({"v": (("t", "y"), np.arange(48.0).reshape(8, 6))})
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_xr_dataset(ds, "e", chunks={"v": [4, 6]})
    store = atlas.Atlas.open(tmp_path / "s")
    lazy = _lazy_of(store, "e", how)
    view = store.open_dataset("e")
    view.delete_array("v")
    view.define_array("v", "int16", ["t", "y"], [8, 6], chunk_shape=[4, 6])
    view.write_array("v", [0, 0], np.full((8, 6), 7, np.int16))
    if flushed:
        store.flush()
    for read in (lambda: lazy["v"].values, lambda: lazy["v"].compute()):
        with pytest.raises(atlas.ArrayNotFoundError, match="defined again as int16"):
            read()
    # an array written again in its own dtype reads as it is now (this process's lazy reads
    # see its writes)
    view.delete_array("v")
    view.define_array("v", "float64", ["t", "y"], [8, 6], chunk_shape=[4, 6])
    view.write_array("v", [0, 0], -ds["v"].values)
    np.testing.assert_array_equal(lazy["v"].values, -ds["v"].values)


def test_a_lazy_read_of_an_unflushed_dataset_reads_it_after_a_flush_that_rebases(tmp_path):
    # the flush re-applies the dataset on top of another writer's commit, under another id:
    # the lazy read still reads it (it checks the ids of committed datasets only)
    ds = xr.Dataset({"v": ("x", np.arange(4.0))})
    atlas.Atlas.create(tmp_path / "s").close()
    mine = atlas.Atlas.open(tmp_path / "s")
    mine.add_xr_dataset(ds, "mine", chunks={"v": [2]})
    lazy = mine.to_xarray("mine")
    before = int(mine._dids(["mine"])[0])
    with atlas.Atlas.open(tmp_path / "s") as theirs:
        theirs.create_dataset("theirs")
    mine.flush()
    assert int(mine._dids(["mine"])[0]) != before  # the rebase moved it
    xr.testing.assert_identical(lazy.load(), ds)


@pytest.mark.parametrize("how", ["to_xarray", "engine"])
def test_a_lazy_read_of_one_dataset_makes_no_dict_of_every_name(tmp_path, how):
    # (checking the dataset's id once made one: ~1 s in a store of 10^6 datasets)
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.write_array_across_stacked("v", [f"p{i}" for i in range(500)],
                                         np.arange(2000.0).reshape(500, 4), chunk_shape=[2])
    store = atlas.Atlas.open(tmp_path / "s")
    lazy = store.to_xarray("p5") if how == "to_xarray" else \
        xr.open_dataset(store, engine="atlas", group="p5", chunks={})
    np.testing.assert_array_equal(lazy["v"].values, np.arange(20.0, 24.0))
    assert store._catalog._dids is None


def test_lazy_graphs_and_views_pickle_as_small_descriptions(written):
    path, ds = written
    store = atlas.Atlas.open(path)
    data = store.to_xarray("d")["temperature"].data
    blob = pickle.dumps(data)
    assert len(blob) < 600 * len(dict(data.__dask_graph__()))  # a description, not the data
    assert b"manifest" not in blob
    np.testing.assert_array_equal(pickle.loads(blob).compute(), ds["temperature"].values)
    # tasks pickled one by one (as distributed does) share one reopened handle per process
    tasks = [task[0] for task in dict(data.__dask_graph__()).values()]
    revived = [pickle.loads(pickle.dumps(task)) for task in tasks[:2]]
    assert revived[0].store is revived[1].store is not store
    np.testing.assert_array_equal(revived[0](), tasks[0]())
    view = pickle.loads(pickle.dumps(store.open_dataset("d")))
    assert view.name == "d"
    np.testing.assert_array_equal(view.read_array("mask"), ds["mask"].values)


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_lazy_reads_compute_on_a_local_cluster_of_processes(written, cluster_client):
    path, ds = written
    store = atlas.Atlas.open(path)
    back = store.to_xarray("d")
    total = cluster_client.compute(back["temperature"].sum()).result()
    np.testing.assert_allclose(total, ds["temperature"].values.sum())
    computed = cluster_client.compute(back).result()
    xr.testing.assert_identical(computed, ds)
    # the tasks ran in the worker processes, not here
    import os

    pids = set(cluster_client.run(os.getpid).values())
    assert os.getpid() not in pids and len(pids) == 2
    # a DatasetView travels too
    view = store.open_dataset("d")
    remote = cluster_client.submit(lambda v: v.read_array("mask"), view).result()
    np.testing.assert_array_equal(remote, ds["mask"].values)


def test_a_graph_reads_the_commit_it_was_built_at_on_every_worker(tmp_path, cluster_client):
    """Lazy objects (to_xarray, to_xarray_many, the xarray backend) computed on worker
    processes give the values of the commit they were built at, every chunk (a worker that
    opened the store after a newer commit gave that commit's chunks: one compute mixed two);
    once that commit has expired, a typed error."""
    path = tmp_path / "store"
    with atlas.Atlas.create(path) as store:
        for name in ("a", "b"):
            store.add_xr_dataset(xr.Dataset({"t": (("y", "x"), np.full((4, 8), 1.0))}), name,
                                 chunks={"t": (1, 8)})
    reader = atlas.Atlas.open(path)
    one, many = reader.to_xarray("a"), reader.to_xarray_many(["a", "b"])
    engine = xr.open_dataset(reader, engine="atlas", group="b", chunks={"y": 1})
    workers = sorted(cluster_client.scheduler_info()["workers"])
    # one worker computes a chunk now, so that it holds the store at the first commit
    assert cluster_client.compute(one["t"][0], workers=workers[:1]).result().values.max() == 1
    with atlas.Atlas.open(path) as writer:
        for name in ("a", "b"):
            writer.open_dataset(name).write_array("t", [0, 0], np.full((4, 8), 2.0))
    for lazy in (one, many, engine):
        computed = cluster_client.compute(lazy["t"]).result().values
        np.testing.assert_array_equal(computed, np.ones_like(computed))
    # a graph of a commit that expired before any worker read it
    other = tmp_path / "other"
    with atlas.Atlas.create(other) as store:
        store.add_xr_dataset(xr.Dataset({"t": ("x", np.arange(8.0))}), "c", chunks={"t": (2,)})
    stale = atlas.Atlas.open(other).to_xarray("c")
    with atlas.Atlas.open(other) as writer:
        writer.open_dataset("c").write_array("t", [0], np.zeros(8))
    with atlas.Atlas.open(other) as writer:
        writer.expire(older_than=0, keep_last=1)
    with pytest.raises(atlas.errors.VersionExpiredError, match="version 1 .* expired"):
        cluster_client.compute(stale["t"]).result(timeout=60)


def _causes(err: BaseException) -> list[BaseException]:
    found = []
    while err is not None:
        found.append(err)
        err = err.__cause__ or err.__context__
    return found


def _lazy_of(store, name: str, how: str) -> xr.Dataset:
    if how == "to_xarray":
        return store.to_xarray(name)
    if how == "to_xarray_many":
        return store.to_xarray_many([name]).isel(dataset=0, drop=True)
    return xr.open_dataset(store, engine="atlas", group=name, chunks={})


@pytest.mark.parametrize("how", ["to_xarray", "engine", "to_xarray_many"])
def test_a_lazy_view_of_unflushed_writes_is_computed_here_not_on_workers(tmp_path,
                                                                        cluster_client, how):
    """add_xr_dataset of a lazy view of this handle's unflushed writes, computed on a cluster,
    stored the committed values (the workers read the commit the graph was built at, which
    does not hold what the view showed; nor does any later one): such a view is read in this
    process only, and add_xr_dataset computes it here."""
    ds = xr.Dataset({"v": ("x", np.arange(8.0))})
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_xr_dataset(ds, "a", chunks={"v": [2]})
    store = atlas.Atlas.open(tmp_path / "s")
    store.open_dataset("a").write_array("v", [0], -ds["v"].values)
    lazy = _lazy_of(store, "a", how)
    for name in ("b", "c"):  # before the flush, and after it
        with pytest.raises(atlas.UnflushedChangesError, match="'v' of .* not flushed then"):
            pickle.dumps(lazy["v"].variable._data if how == "engine" else lazy["v"].data)
        with pytest.raises((TypeError, ValueError)) as raised:  # the client wraps it
            cluster_client.compute(lazy["v"]).result()
        assert any(isinstance(e, atlas.UnflushedChangesError) for e in _causes(raised.value))
        store.add_xr_dataset(lazy, name)
        np.testing.assert_array_equal(store.open_dataset(name).read_array("v"),
                                      -ds["v"].values)
        store.flush()
    for name in ("a", "b", "c"):  # made again after the flush: sent, and read at that commit
        again = _lazy_of(store, name, how)
        np.testing.assert_array_equal(cluster_client.compute(again["v"]).result().values,
                                      -ds["v"].values)
    # a change to another dataset does not hold a graph back
    fresh = _lazy_of(store, "a", how)
    store.open_dataset("b").write_array("v", [0], ds["v"].values)
    np.testing.assert_array_equal(cluster_client.compute(fresh["v"]).result().values,
                                  -ds["v"].values)


def test_backend_engine_opens_without_reading_and_reads_only_the_window(written):
    path, ds = written
    counting = CountingStorage(LocalStorage(path))
    opened = xr.open_dataset(atlas.Atlas.open(counting), engine="atlas", group="d")
    assert counting.reads_of("temperature") == []
    window = opened["temperature"][2:4, 4:8, 0:5].values
    np.testing.assert_array_equal(window, ds["temperature"].values[2:4, 4:8, 0:5])
    (block,) = _block_sizes(path, "temperature")
    assert [(f[2], f[3]) for f in counting.chunk_fetches("temperature")] == [(1, block)]


def test_a_lazy_read_of_more_chunks_than_a_graph_holds_says_so(tmp_path):
    """10^8 chunks (a sparse array, one chunk written) ran for minutes and ended in a bare
    MemoryError while the graph was built."""
    store = atlas.Atlas.create(tmp_path / "s")
    view = store.create_dataset("sparse")
    view.define_array("v", "float32", ["y", "x"], [10**7, 10**7], [1000, 1000])
    view.write_array("v", [0, 0], np.ones((1000, 1000), np.float32))
    store.flush()
    with pytest.raises(ValueError, match="100000000 chunks.* one dask task per chunk"):
        store.to_xarray("sparse")
    # to_xarray_many had no such bound: a graph of 2 * 10^7 tasks grew for minutes
    view = store.create_dataset("wide")
    view.define_array("g", "float32", ["a", "b"], [20_000, 100_000], [1, 1000])
    with pytest.raises(ValueError, match="2000000 chunks.* one dask task per chunk"):
        store.to_xarray_many(["wide"])
    with pytest.raises(ValueError, match="one dask task per chunk"):
        store.open_mfdataset(["wide"])


def test_a_store_made_again_at_its_path_is_not_read_through_the_old_ones_handle(tmp_path):
    """A process keeps one reopened handle per store and commit; keyed by the generation
    only, a store deleted and made again at the same path (at the same generation) was read
    through the old store's handle, giving its values (a worker reading a pickled graph)."""
    import pickle
    import shutil

    def build(value):
        store = atlas.Atlas.create(tmp_path / "s")
        store.add_xr_dataset(xr.Dataset({"t": (("x", "y"), np.full((8, 6), value))}), "a",
                             chunks={"t": [4, 3]})
        store.flush()
        return store

    old = build(1.0)
    graph = pickle.loads(pickle.dumps(old.to_xarray("a")))  # as a worker gets it
    np.testing.assert_array_equal(graph["t"].values, np.full((8, 6), 1.0))
    shutil.rmtree(tmp_path / "s")
    new = build(2.0)
    assert new.generation == old.generation
    again = pickle.loads(pickle.dumps(new.to_xarray("a")))
    np.testing.assert_array_equal(again["t"].values, np.full((8, 6), 2.0))
    # a process that never read the old store: the old graph's commit is not there any more
    reopened = atlas.Atlas.open(tmp_path / "s")._at_commit(old._commit_mark())
    with pytest.raises(atlas.StaleHandleError, match="another store now"):
        reopened.list_datasets()
