"""What only object stores have: URLs with options, HTTP stores, multipart uploads, spill files,
lost commit responses, truncated objects, pickling across processes, dask.distributed."""

from __future__ import annotations

import gc
import http.server
import os
import pickle
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from _s3 import BUCKET, moto_s3, s3_store  # noqa: F401  (fixtures)

import atlas
from atlas.format.keys import ROOT_KEY as MANIFEST_KEY
from atlas.storage import CountingStorage, FaultyStorage, InjectedFault, open_storage
from atlas.storage._obstore import ObjectStorage


def write_fields(store: atlas.Atlas, names, shape=(16, 12), chunks=(8, 6), seed=0) -> dict:
    ref = {}
    for i, name in enumerate(names):
        values = np.random.default_rng(seed + i).standard_normal(shape)
        ds = store.create_dataset(name)
        ds.define_array("temperature", "float64", ["y", "x"], list(shape),
                        chunk_shape=list(chunks))
        ds.write_array("temperature", [0] * len(shape), values)
        ref[name] = values
    return ref


@pytest.fixture(params=["LocalStore", "MemoryStore", "S3Store"])
def object_store(request, tmp_path):
    """Each obstore backend of the conformance suite, as a store object."""
    from obstore.store import LocalStore, MemoryStore

    if request.param == "LocalStore":
        return LocalStore(tmp_path / "store", mkdir=True)
    if request.param == "MemoryStore":
        return MemoryStore()
    return request.getfixturevalue("s3_store")


# -- URLs and options ------------------------------------------------------------------------


def test_s3_urls_with_store_options_open_the_same_store(moto_s3):
    url = f"s3://{BUCKET}/{moto_s3.new_prefix()}"
    options = moto_s3.options()
    with atlas.Atlas.create(url, **options) as store:
        ref = write_fields(store, ["a", "b"])
    reader = atlas.Atlas.open(url, **options)
    assert reader.location == url
    np.testing.assert_array_equal(reader.open_dataset("b").read_array("temperature"), ref["b"])
    # the same objects, seen through a store object built by hand
    by_store = atlas.Atlas.open(moto_s3.store(url.rsplit("/", 1)[1]))
    assert by_store.list_datasets() == ["a", "b"]
    again = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(again.open_dataset("a").read_array("temperature"), ref["a"])


def test_unknown_options_are_rejected_by_name():
    from obstore.store import MemoryStore

    with pytest.raises(TypeError, match="colour"):
        atlas.Atlas.create(MemoryStore(), colour="blue")
    with pytest.raises(ValueError, match="s3://"):
        atlas.Atlas.open("s3://bucket/prefix", not_an_s3_option=1)


@pytest.mark.parametrize("url", [f"s3://{BUCKET}/q?x=1", f"s3://{BUCKET}/a#f", "http://h/a?x=1",
                                 f"s3://{BUCKET}/dots/../x", f"s3://{BUCKET}/a/./x",
                                 f"s3://{BUCKET}/%2e%2e/x", "gs://bucket/a/..",
                                 f"s3://{BUCKET}/x\ny", f"s3://{BUCKET}/x\ty"])
def test_store_urls_obstore_would_rewrite_are_refused(moto_s3, url):
    # obstore drops a query and a fragment and resolves dot segments: such a URL would open
    # (or create) a store at another prefix than the one written; nothing is created
    client = moto_s3.boto3_client()
    before = client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    with pytest.raises(ValueError, match="query string or fragment|'.' or '..'|control"):
        atlas.Atlas.create(url, **(moto_s3.options() if url.startswith("s3") else {}))
    assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == before


# -- HTTP: read-only ---------------------------------------------------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte-range support; records every request's method."""

    methods: list[str]

    def log_message(self, *args):
        pass

    def _refuse(self):
        self.methods.append(self.command)
        self.send_error(405)

    do_PUT = do_DELETE = do_POST = do_PROPFIND = do_MKCOL = _refuse

    def do_HEAD(self):
        self.methods.append("HEAD")
        super().do_HEAD()

    def do_GET(self):
        self.methods.append("GET")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not match or not os.path.isfile(path):
            return super().do_GET()
        data = Path(path).read_bytes()
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])


@pytest.fixture
def http_root(tmp_path):
    """(base URL, recorded methods) of an HTTP server on 127.0.0.1 serving ``tmp_path``."""
    methods: list[str] = []
    handler = type("Handler", (_RangeHandler,), {"methods": methods})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", methods
    server.shutdown()
    thread.join()


def test_http_stores_read_and_refuse_writes_before_any_request(tmp_path, http_root):
    from obstore.store import HTTPStore

    base, methods = http_root
    with atlas.Atlas.create(tmp_path / "store") as store:
        ref = write_fields(store, ["a", "b", "c"])
    http = {"client_options": {"allow_http": True}}  # plain http must be allowed explicitly
    reader = atlas.Atlas.open(f"{base}/store", **http)
    np.testing.assert_array_equal(
        reader.read_array_across_stacked("temperature", ["a", "b", "c"], [3, 2], [9, 7]),
        np.stack([ref[n][3:12, 2:9] for n in "abc"]))
    seen = len(methods)
    with pytest.raises(atlas.ReadOnlyError):
        reader.create_dataset("d")
    with pytest.raises(atlas.ReadOnlyError):
        reader.delete_dataset("a")
    with pytest.raises(atlas.ReadOnlyError):
        atlas.Atlas.create(HTTPStore(f"{base}/elsewhere", **http))
    with pytest.raises(atlas.ReadOnlyError):
        reader.compact()
    assert len(methods) == seen  # refused before any request
    # root, the catalog part's tail (footer and tables), the segment's tail (footer and index),
    # then the blocks: GETs only, no listing
    assert methods == ["GET"] * 4, methods
    for lists in (reader.history, reader.tags, reader.usage, reader.verify):
        with pytest.raises(NotImplementedError, match="cannot list its files"):
            lists()  # an HTTP server has no listing (obstore's WebDAV PROPFIND got a 405)


# -- writes: multipart, spill files ------------------------------------------------------------


@pytest.mark.parametrize("option", [dict(part_size=-1), dict(part_size=0),
                                    dict(part_size="8MB"), dict(part_size=1 << 20),
                                    dict(max_concurrency=-3), dict(max_concurrency=0),
                                    dict(coalesce=-1), dict(coalesce="x"),
                                    dict(spill_dir=3)])
def test_bad_store_options_are_refused_when_the_store_opens(moto_s3, option):
    """They were taken, and a later flush or read failed naming nothing (a bare
    OverflowError, 'invalid zero value')."""
    prefix = moto_s3.new_prefix()
    (name,) = option
    with pytest.raises((ValueError, TypeError), match=f"store option {name}"):
        atlas.Atlas.create(moto_s3.store(prefix), **option)
    atlas.Atlas.create(moto_s3.store(prefix)).flush()
    with pytest.raises((ValueError, TypeError), match=f"store option {name}"):
        atlas.Atlas.open(moto_s3.store(prefix), **option)


def test_a_crashed_writers_spill_file_is_found_under_any_url_of_its_store(moto_s3):
    """Spill files were named by a digest of the URL text: a writer that opened
    s3://b/p/ left a file that verify() of s3://b/p never listed nor removed."""
    prefix = moto_s3.new_prefix()
    names = [f"{scheme}://{BUCKET}/{prefix}{slash}" for scheme in ("s3", "s3a")
             for slash in ("", "/")]
    tags = {open_storage(url, **moto_s3.options())._spill_prefix() for url in names}
    tags.add(open_storage(moto_s3.store(prefix))._spill_prefix())
    assert len(tags) == 1
    other = open_storage(f"s3://{BUCKET}/{prefix}x", **moto_s3.options())._spill_prefix()
    assert other not in tags


def test_a_store_in_a_bucket_that_does_not_exist_says_so(moto_s3):
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        atlas.Atlas.create("s3://no-such-bucket/store", **moto_s3.options())


def test_large_segments_upload_in_parts(moto_s3):
    prefix = moto_s3.new_prefix()
    part = 5 << 20  # the smallest part S3 accepts
    store = atlas.Atlas.create(moto_s3.store(prefix), codec="none", part_size=part)
    ref = write_fields(store, ["a", "b", "c"], shape=(512, 512), chunks=(256, 256))
    store.flush()  # one segment of 3 x 2 MiB of float64, more than one part
    (key,) = [k for k, _s, _m in open_storage(moto_s3.store(prefix)).list("segments")]
    head = moto_s3.boto3_client().head_object(Bucket=BUCKET, Key=f"{prefix}/{key}")
    assert head["ContentLength"] > part
    assert re.search(r"-2\"$", head["ETag"]), head["ETag"]  # S3's mark of a 2-part upload
    reader = atlas.Atlas.open(moto_s3.store(prefix))
    np.testing.assert_array_equal(
        reader.read_array_across_stacked("temperature", ["a", "b", "c"]),
        np.stack([ref[n] for n in "abc"]))


def test_spill_files_are_removed_after_commit_compact_and_abandon(object_store, tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    store = atlas.Atlas.create(object_store, spill_dir=str(spill))
    write_fields(store, ["a", "b"])
    assert len(os.listdir(spill)) == 1  # one pending segment for "temperature"
    store.flush()
    assert os.listdir(spill) == []
    write_fields(store, ["c"])
    store.flush()
    store.compact(grace=0)
    assert os.listdir(spill) == []
    write_fields(store, ["d"])
    assert len(os.listdir(spill)) == 1
    del store
    gc.collect()
    assert os.listdir(spill) == []  # a handle dropped without flushing leaves nothing


# -- commits -----------------------------------------------------------------------------------


def test_commit_whose_response_was_lost_succeeds_when_retried(object_store):
    atlas.Atlas.create(object_store)
    faulty = FaultyStorage(open_storage(object_store), rate=1.0, ops=("commit",), when="after")
    store = atlas.Atlas.open(faulty)
    ref = write_fields(store, ["a"])
    with pytest.raises(InjectedFault):
        store.flush()  # the manifest landed, the writer did not hear back
    faulty.enabled = False
    store.flush()  # recognises its own manifest instead of reporting a conflict
    reader = atlas.Atlas.open(object_store)
    assert reader.generation == store.generation == 1
    np.testing.assert_array_equal(reader.open_dataset("a").read_array("temperature"), ref["a"])
    write_fields(store, ["b"])
    store.flush()  # and the handle keeps committing
    assert atlas.Atlas.open(object_store).list_datasets() == ["a", "b"]


def test_read_only_option_refuses_writes(object_store):
    atlas.Atlas.create(object_store).flush()
    store = atlas.Atlas.open(object_store, read_only=True)
    with pytest.raises(atlas.ReadOnlyError, match="read-only"):
        store.create_dataset("x")
    storage = open_storage(object_store, read_only=True)
    with pytest.raises(atlas.ReadOnlyError):
        storage.commit(MANIFEST_KEY, b"", None)


# -- damaged objects ---------------------------------------------------------------------------


def test_truncated_segment_reads_raise_corruption(object_store):
    import obstore

    with atlas.Atlas.create(object_store) as store:
        write_fields(store, ["a", "b"])
    storage = open_storage(object_store)
    (key,) = [k for k, _s, _m in storage.list("segments")]
    footer_read = atlas.Atlas.open(object_store)
    footer_read._committed_index("temperature")  # footer and index cached (no block), then damage
    whole = storage.get(key)
    obstore.put(object_store, key, whole[: len(whole) // 2])
    with pytest.raises(atlas.CorruptionError, match="bytes"):
        footer_read.read_array_across_stacked("temperature", ["a", "b"])
    with pytest.raises(atlas.CorruptionError):
        atlas.Atlas.open(object_store).open_dataset("a").read_array("temperature")
    assert not atlas.Atlas.open(object_store).verify().ok


def test_verify_counts_each_damaged_block_with_many_requests_in_flight(object_store,
                                                                       monkeypatch):
    """A remote verify checks blocks side by side, in groups bounded in bytes (two blocks a
    group here): each damaged block is counted once, the sound ones pass."""
    import obstore

    from atlas.core import _maintain

    monkeypatch.setattr(_maintain, "VERIFY_BYTES_IN_FLIGHT", 2 * 4096)
    names = [f"d{i}" for i in range(64)]
    with atlas.Atlas.create(object_store, block_size=4096) as store:
        store.write_array_across_stacked(
            "v", names, np.random.default_rng(0).random((64, 512)).astype(np.float32))
    assert atlas.Atlas.open(object_store).verify().ok
    storage = open_storage(object_store)
    (key,) = [k for k, _s, _m in storage.list("segments")]
    blocks = atlas.Atlas.open(object_store)._committed_index("v")
    damaged = bytearray(storage.get(key))
    for n in (1, 5, 6):  # a byte in the middle of three blocks
        damaged[int(blocks.block_offset[n]) + int(blocks.block_stored[n]) // 2] ^= 0xFF
    obstore.put(object_store, key, bytes(damaged))
    problems = atlas.Atlas.open(object_store).verify().problems
    assert any(f"3 of {len(blocks.block_offset)} blocks fail their checksum" in p
               for p in problems), problems


def test_missing_segment_reads_raise_file_not_found(object_store):
    import obstore

    with atlas.Atlas.create(object_store) as store:
        write_fields(store, ["a"])
    (key,) = [k for k, _s, _m in open_storage(object_store).list("segments")]
    obstore.delete(object_store, key)
    with pytest.raises(FileNotFoundError, match=re.escape(key)):
        atlas.Atlas.open(object_store).open_dataset("a").read_array("temperature")


# -- processes ---------------------------------------------------------------------------------


def test_memory_store_handles_do_not_reopen_in_another_process(monkeypatch):
    from obstore.store import MemoryStore

    from atlas.storage import _obstore

    store = MemoryStore()
    atlas.Atlas.create(store).flush()
    payload = pickle.dumps(atlas.Atlas.open(store))
    assert pickle.loads(payload).list_datasets() == []  # same process: the same store
    monkeypatch.setattr(_obstore.os, "getpid", lambda: -1)
    with pytest.raises(ValueError, match="MemoryStore"):
        pickle.loads(payload).list_datasets()


def test_descriptions_reopen_the_same_backend(s3_store):
    storage = ObjectStorage(s3_store, part_size=6 << 20)
    again = pickle.loads(pickle.dumps(storage.describe()))
    from atlas.storage import from_description

    reopened = from_description(again)
    assert isinstance(reopened, ObjectStorage)
    assert reopened.options["part_size"] == 6 << 20
    assert reopened.location == storage.location
    counting = CountingStorage(storage)
    wrapped = from_description(pickle.loads(pickle.dumps(counting.describe())))
    assert isinstance(wrapped, CountingStorage) and wrapped.location == storage.location


def test_lazily_opened_s3_store_computes_on_a_process_cluster(s3_store):
    import distributed

    names = [f"d{i}" for i in range(4)]
    with atlas.Atlas.create(s3_store) as store:
        ref = write_fields(store, names)
    lazy = atlas.Atlas.open(s3_store)
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        views = [lazy.open_dataset(n) for n in names]
        futures = client.map(lambda view: (os.getpid(), view.read_array("temperature")), views)
        results = client.gather(futures)
        stacked = client.submit(lazy.read_array_across_stacked, "temperature", names).result()
        lazy_ds = lazy.to_xarray(names[2])  # dask-backed; computed by the cluster's workers
        assert lazy_ds["temperature"].chunks == ((8, 8), (6, 6))
        with distributed.get_task_stream(client) as tasks:
            computed = lazy_ds["temperature"].compute().values
        assert len(tasks.data) >= 4  # one task per stored chunk ran on the workers
    np.testing.assert_array_equal(computed, ref[names[2]])
    assert all(pid != os.getpid() for pid, _values in results)
    for name, (_pid, values) in zip(names, results):
        np.testing.assert_array_equal(values, ref[name])
    np.testing.assert_array_equal(stacked, np.stack([ref[n] for n in names]))


def test_merges_link_blocks_on_s3_and_every_version_reads_back(moto_s3):
    """The merge that links full blocks works the same through an object store: the linked
    files stay, old versions and the latest read exactly, verify is clean, and a compaction
    plus an expiry removes them."""
    rng = np.random.default_rng(19)
    url = f"s3://{BUCKET}/{moto_s3.new_prefix()}"
    store = atlas.Atlas.create(url, block_size=4096, **moto_s3.options())
    names = [f"p{i}" for i in range(64)]
    values = rng.normal(size=(64, 16))  # chunks of 128 bytes: packed into 4 KiB blocks
    store.write_array_across_stacked("v", names, values, dims=["d"])
    store.flush()
    model = {store.version: values.copy()}
    for _ in range(8):
        rows = np.sort(rng.choice(64, 16, replace=False))
        values[rows] = rng.normal(size=(16, 16))
        store.write_array_across_stacked("v", [names[i] for i in rows], values[rows], dims=["d"])
        store.flush()
        model[store.version] = values.copy()
    linked = [r.key for r in store._root.linked]
    assert linked
    for generation, expected in model.items():
        old = atlas.Atlas.open(url, version=generation, **moto_s3.options())
        assert np.array_equal(old.read_array_across_stacked("v"), expected)
    assert atlas.Atlas.open(url, **moto_s3.options()).verify().ok
    store.compact()
    store.expire(older_than=0, keep_last=1)
    fresh = atlas.Atlas.open(url, **moto_s3.options())
    assert np.array_equal(fresh.read_array_across_stacked("v"), values)
    assert fresh.verify().ok and not set(linked) & set(fresh._storage.keys("segments"))
