"""What crashed or exiting writers leave outside the store's keys (item 9 of issue 17).

A flush killed during a multipart upload leaves the upload's parts on S3 (billed, never
aborted) and its spill files in the temp folder; before the fix nothing listed or removed
either, and a writer in a multiprocessing (fork/forkserver) child exiting with pending writes
left its spill files behind (such children end with os._exit: no atexit, no finalizer). Format
version 2 writes segments and catalog parts alike through spill files (uploaded multipart above
the part size). Now ``verify()`` lists both kinds of leftovers, of segments and of parts, in
``report.leftovers``, ``verify(repair=True)`` and ``compact()`` abort and delete those older
than the orphan grace period, a live writer's spill file (pending, or held by a flush whose
commit failed) is never taken, and spill files go on every exit Python sees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import numpy as np
import pytest

import atlas
from atlas.core import _maintain
from atlas.storage import open_storage

from ._harness import record

from _s3 import BUCKET, moto_s3  # noqa: F401, E402  (the moto server fixture, tests/_s3.py)

SEEN: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if SEEN:
        record("leftovers", checks=sum(SEEN.values()), outcomes=dict(sorted(SEEN.items())))


def _uploads(client, prefix: str) -> list[str]:
    found = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
    return sorted(u["UploadId"] for u in found)


def _start_upload(client, key: str) -> str:
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1,
                       Body=b"x" * (5 << 20))
    return upload


def _write(store, name: str, values: np.ndarray) -> None:
    ds = store.create_dataset(name)
    ds.define_array("a", "float64", ["x"], [values.size], [values.size])
    ds.write_array("a", [0], values)


KEYS = {"segment": "segments/00000009-{}.seg", "catalog part": "catalog/00000009-{}.cat"}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_incomplete_multipart_uploads_are_reported_and_aborted_after_the_grace(
        moto_s3, tmp_path, monkeypatch, kind):
    """Format version 2 uploads segments and catalog parts alike (multipart above the part
    size): an upload of either that a crashed writer left is ours."""
    prefix = moto_s3.new_prefix()
    url = f"s3://{BUCKET}/{prefix}"
    options = {**moto_s3.options(), "spill_dir": str(tmp_path)}
    store = atlas.Atlas.create(url, **options)
    _write(store, "d", np.arange(10.0))
    store.flush()
    client = moto_s3.boto3_client()
    ours = _start_upload(client, f"{prefix}/" + KEYS[kind].format("e" * 32))
    other_prefix = moto_s3.new_prefix()  # another store's upload: never ours to abort
    theirs = _start_upload(client, f"{other_prefix}/" + KEYS[kind].format("e" * 32))

    report = store.verify()
    assert report.ok and len(report.leftovers) == 1 and ours in report.leftovers[0]
    # moto dates every upload 2010-11-10: a grace longer than that makes it a young upload
    monkeypatch.setattr(_maintain, "ORPHAN_GRACE_SECONDS", time.time())
    store.verify(repair=True)
    store.compact()
    assert _uploads(client, prefix) == [ours]  # younger than the grace: maybe a live writer's
    monkeypatch.setattr(_maintain, "ORPHAN_GRACE_SECONDS", 0.0)
    removed = store.verify(repair=True).removed
    assert any(ours in r for r in removed)
    assert _uploads(client, prefix) == [] and _uploads(client, other_prefix) == [theirs]
    again = _start_upload(client, f"{prefix}/" + KEYS[kind].format("f" * 32))
    assert any(again in r for r in store.verify().leftovers)
    store.compact()
    assert _uploads(client, prefix) == []
    assert store.verify().leftovers == []
    SEEN[f"multipart uploads aborted ({kind})"] += 2


WRITER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import atlas
    url, options, what = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    store = atlas.Atlas.open(url, **options)
    ds = store.create_dataset("big")
    if what == "segment":  # 24 MiB of chunks
        ds.define_array("a", "float64", ["x"], [3 << 20], [1 << 20])
        ds.write_array("a", [0], np.random.default_rng(0).random(3 << 20))
    else:  # no chunks, a catalog part of 12 MiB
        ds.set_attribute("blob", np.random.default_rng(0).bytes(12 << 20))
    print("flushing", flush=True)
    store.flush()
    print("flushed", flush=True)
""")


def test_an_s3_store_set_up_by_the_environment_lists_its_uploads_there(moto_s3, tmp_path,
                                                                       monkeypatch, capsys):
    """The endpoint, region and keys in AWS_* variables (as cli.md sets them up): the listing
    of incomplete uploads goes to that endpoint too (it went to AWS itself: nothing listed,
    and `atlas verify` printed Python's two-line warning)."""
    from atlas.cli import main

    options = moto_s3.options()
    for name, value in {"AWS_ENDPOINT": options["endpoint"], "AWS_REGION": "us-east-1",
                        "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    prefix = moto_s3.new_prefix()
    url = f"s3://{BUCKET}/{prefix}"
    store = atlas.Atlas.create(url, spill_dir=str(tmp_path))
    _write(store, "d", np.arange(10.0))
    store.flush()
    ours = _start_upload(moto_s3.boto3_client(), f"{prefix}/" + KEYS["segment"].format("e" * 32))
    assert any(ours in x for x in atlas.Atlas.open(url).verify().leftovers)
    assert main(["verify", url]) == 0
    err = capsys.readouterr().err
    assert "Warning" not in err and "multipart" not in err, err
    SEEN["multipart uploads listed (environment)"] += 1


@pytest.mark.parametrize("what", ["segment", "catalog part"])
def test_a_flush_killed_mid_upload_leaves_leftovers_that_repair_removes(moto_s3, tmp_path,
                                                                        monkeypatch, what):
    """A real kill: a writer uploading a 24 MiB segment (or a 12 MiB catalog part) in 5 MiB
    parts is SIGKILLed as soon as its multipart upload exists."""
    client = moto_s3.boto3_client()
    for attempt in range(5):
        prefix = moto_s3.new_prefix()
        url = f"s3://{BUCKET}/{prefix}"
        spill = tmp_path / f"spill{attempt}"
        spill.mkdir()
        options = {**moto_s3.options(), "spill_dir": str(spill), "part_size": 5 << 20,
                   "max_concurrency": 1}
        with atlas.Atlas.create(url, codec="none", **options) as store:
            _write(store, "small", np.arange(5.0))
        proc = subprocess.Popen([sys.executable, "-c", WRITER, url, json.dumps(options),
                                 what], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not _uploads(client, prefix) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if _uploads(client, prefix):
            break
    else:
        pytest.fail("the writer never got killed during its upload")
    store = atlas.Atlas.open(url, **options)
    assert store.list_datasets() == ["small"]  # the previous commit, nothing in between
    report = store.verify()
    assert report.ok
    kinds = Counter("multipart" if "multipart" in x else "spill" for x in report.leftovers)
    assert kinds["multipart"] == 1 and kinds["spill"] >= 1, report.leftovers
    folder = "segments/" if what == "segment" else "catalog/"
    assert any(folder in x for x in report.leftovers if "multipart" in x), report.leftovers
    assert os.listdir(spill)
    monkeypatch.setattr(_maintain, "ORPHAN_GRACE_SECONDS", 0.0)
    store.verify(repair=True)
    assert _uploads(client, prefix) == [] and os.listdir(spill) == []
    assert store.verify().leftovers == []
    record("leftovers-killed-upload", what=what, attempts=attempt + 1, leftovers=dict(kinds))
    SEEN[f"killed upload cleaned ({what})"] += 1


def test_a_live_writers_spill_file_is_never_removed(tmp_path, monkeypatch):
    from obstore.store import MemoryStore

    storage = open_storage(MemoryStore(), spill_dir=str(tmp_path))
    atlas.Atlas.create(storage).flush()
    writer = atlas.Atlas.open(storage)
    _write(writer, "pending", np.arange(4.0))
    assert len(os.listdir(tmp_path)) == 1
    monkeypatch.setattr(_maintain, "ORPHAN_GRACE_SECONDS", 0.0)
    sweeper = atlas.Atlas.open(storage)
    assert sweeper.verify().leftovers == []
    sweeper.verify(repair=True)
    sweeper.compact()
    assert len(os.listdir(tmp_path)) == 1
    writer.flush()
    assert atlas.Atlas.open(storage).open_dataset("pending").read_array("a").tolist() == \
        [0.0, 1.0, 2.0, 3.0]
    assert os.listdir(tmp_path) == []
    SEEN["live spill kept"] += 1


def test_a_writer_whose_commit_failed_keeps_its_segment_and_part_spill_files(tmp_path):
    """A flush whose commit raised keeps its attempt: the published segment's and catalog
    part's spill files stay locked until the retry settles it. A sweep of leftovers with no
    grace at all neither lists nor removes them, and the retry commits. (Its uploaded files
    are unreferenced objects meanwhile, which an orphan sweep keeps for an hour: not zero
    here.)"""
    from obstore.store import MemoryStore

    from atlas.storage import FaultyStorage

    storage = open_storage(MemoryStore(), spill_dir=str(tmp_path))
    atlas.Atlas.create(storage).flush()
    faulty = FaultyStorage(storage, rate=1.0, ops=("commit",))
    writer = atlas.Atlas.open(faulty)
    _write(writer, "pending", np.arange(4.0))
    with pytest.raises(ConnectionError):
        writer.flush()
    assert len(os.listdir(tmp_path)) == 2  # the segment's and the catalog part's
    sweeper = atlas.Atlas.open(storage)
    report = sweeper.verify()
    assert report.leftovers == [] and len(report.orphans) == 2  # uploaded, not committed
    assert storage.remove_leftovers(0.0) == []
    sweeper.verify(repair=True)
    sweeper.compact()
    assert len(os.listdir(tmp_path)) == 2
    faulty.enabled = False
    writer.flush()
    assert atlas.Atlas.open(storage).open_dataset("pending").read_array("a").tolist() == \
        [0.0, 1.0, 2.0, 3.0]
    assert os.listdir(tmp_path) == []
    SEEN["failed commit's spills kept"] += 1


EXITS = {
    "exception": "raise RuntimeError('boom')",
    "keyboard interrupt": "os.kill(os.getpid(), signal.SIGINT); time.sleep(30)",
    "normal exit": "sys.exit(0)",
    "failed flush": textwrap.dedent("""
        from atlas.storage import FaultyStorage
        faulty = atlas.Atlas.open(FaultyStorage(storage, rate=1.0, ops=("publish",)))
        _write(faulty)
        try:
            faulty.flush()
        except ConnectionError:
            pass
        HELD.append(faulty)"""),
    "fork worker": "run_in('fork')",
    "forkserver worker": "run_in('forkserver')",
}
EXIT_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, signal, sys, time
    import numpy as np
    import atlas
    from atlas.storage import open_storage

    HELD = []  # a handle kept by a global: never dropped before the process ends

    def _write(store):
        ds = store.create_dataset(f"d{len(store)}")
        ds.define_array("a", "float64", ["x"], [100], [10])
        ds.write_array("a", [0], np.arange(100.0))

    def worker(spill):
        store = atlas.Atlas.create(open_storage("memory:///", spill_dir=spill))
        _write(store)
        HELD.append(store)

    def run_in(method):
        proc = multiprocessing.get_context(method).Process(target=worker, args=(SPILL,))
        proc.start()
        proc.join()

    if __name__ == "__main__":
        SPILL = sys.argv[1]
        storage = open_storage("memory:///", spill_dir=SPILL)
        store = atlas.Atlas.create(storage)
        _write(store)
        HELD.append(store)
        assert os.listdir(SPILL), "no spill file was written"
""")


@pytest.mark.parametrize("how", sorted(EXITS))
def test_spill_files_go_on_every_exit_python_sees(tmp_path, how):
    script = tmp_path / "writer.py"
    script.write_text(EXIT_SCRIPT + textwrap.indent(EXITS[how], "    ") + "\n")
    spill = tmp_path / "spill"
    spill.mkdir()
    done = subprocess.run([sys.executable, str(script), str(spill)], capture_output=True,
                          text=True, timeout=120)
    assert "no spill file" not in done.stderr, done.stderr
    assert os.listdir(spill) == [], f"{how}: {os.listdir(spill)} left\n{done.stderr[-2000:]}"
    SEEN[f"spills gone: {how}"] += 1


KILLED_WRITER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import atlas
    url, options, name = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    store = atlas.Atlas.open(url, **options)
    ds = store.create_dataset(name)
    ds.define_array("a", "float64", ["x"], [3 << 20], [1 << 20])
    ds.write_array("a", [0], np.random.default_rng(len(name)).random(3 << 20))
    print("flushing", flush=True)
    store.flush()
    print("flushed", flush=True)
""")


@pytest.mark.slow
def test_many_writers_killed_at_random_moments_of_their_flush_leave_nothing_after_repair(
        moto_s3, tmp_path, monkeypatch):
    """12 writers SIGKILLed 0-1.5 s into their flush (some during the upload, some before or
    after it): the store is always at its last acknowledged flush, and one repair removes
    every leftover."""
    rng = np.random.default_rng(17)
    client = moto_s3.boto3_client()
    prefix = moto_s3.new_prefix()
    url = f"s3://{BUCKET}/{prefix}"
    options = {**moto_s3.options(), "spill_dir": str(tmp_path), "part_size": 5 << 20}
    atlas.Atlas.create(url, codec="none", **options).flush()
    acknowledged: list[str] = []
    found = Counter()
    for n in range(12):
        name = f"big{n}"
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, url, json.dumps(options),
                                 name], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "flushing"
        time.sleep(float(rng.uniform(0, 1.5)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        if "flushed" in out:
            acknowledged.append(name)
        store = atlas.Atlas.open(url, **options)
        listed = store.list_datasets()
        assert listed in (acknowledged, acknowledged + [name]), (listed, acknowledged)
        if listed != acknowledged:
            acknowledged.append(name)  # landed, response lost to the kill
        report = store.verify()
        assert report.ok, report.problems
        found.update("multipart" if "multipart" in x else "spill" for x in report.leftovers)
    monkeypatch.setattr(_maintain, "ORPHAN_GRACE_SECONDS", 0.0)
    store.verify(repair=True)
    assert _uploads(client, prefix) == [] and os.listdir(tmp_path) == []
    assert store.verify().leftovers == [] and store.verify().orphans == []
    record("leftovers-slow", kills=12, acknowledged=len(acknowledged),
           leftovers_seen=dict(found))
    SEEN["many kills cleaned"] += 1
