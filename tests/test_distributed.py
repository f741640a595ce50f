"""Distributed writes (issue 18): forked writers on a real dask.distributed LocalCluster of
worker processes, against a local store and the moto S3 server; dask-backed variables written
on the workers; ``atlas ingest --workers/--scheduler``, with a worker killed mid-ingest."""

from __future__ import annotations

import json
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _s3 import BUCKET, moto_s3  # noqa: F401  (fixture)

import atlas
from atlas.cli import main

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=50)
        client = distributed.Client(local)
        yield client
        client.close()
        local.close()


def write_profiles(fork, who: int, count: int):
    """A task: create ``count`` datasets through a forked writer, return its change set."""
    writer = fork.writer()
    for i in range(count):
        view = writer.create_dataset(f"w{who}-{i:02d}")
        view.define_array("temp", "float32", ["depth"], [5], fill_value=float("nan"))
        view.write_array("temp", [0], np.arange(5, dtype=np.float32) + who * 100 + i)
        view.define_array("lat", "float64", [], [])
        view.write_array("lat", [], np.asarray(float(who)))
        view.set_attribute("who", who)
    return writer.changes()


def expected_rows(workers: int, count: int) -> dict:
    return {f"w{w}-{i:02d}": np.arange(5, dtype=np.float32) + w * 100 + i
            for w in range(workers) for i in range(count)}


def check_profiles(store: atlas.Atlas, rows: dict) -> None:
    names = [n for n in store.list_datasets() if n in rows]
    assert sorted(names) == sorted(rows)
    stacked = store.read_array_across_stacked("temp", names)
    np.testing.assert_array_equal(stacked, np.stack([rows[n] for n in names]))
    for name in names:
        stats = store.open_dataset(name).array_stats("temp")
        assert (stats["min"], stats["max"]) == (float(rows[name].min()),
                                                 float(rows[name].max()))
        assert store.open_dataset(name).get_attribute("who") == int(name[1])
    assert store.verify().ok


@pytest.mark.parametrize("where", ["local", "s3"])
def test_forked_writers_on_worker_processes_commit_once(cluster, tmp_path, where, moto_s3):
    if where == "local":
        location, options = str(tmp_path / "s"), {}
    else:
        location, options = f"s3://{BUCKET}/{moto_s3.new_prefix()}", moto_s3.options()
    store = atlas.Atlas.create(location, **options)
    store.create_dataset("first").set_attribute("who", 9)
    store.flush()
    fork = store.fork()
    futures = [cluster.submit(write_profiles, fork, who, 6, pure=False) for who in range(4)]
    change_sets = cluster.gather(futures)
    assert all(c.base.generation == 1 and len(c.datasets) == 6 for c in change_sets)
    assert atlas.Atlas.open(location, **options).list_datasets() == ["first"]  # not yet
    own = store.create_dataset("client")  # the client's own changes go in the same commit
    own.set_attribute("who", 8)
    store.merge(change_sets)
    assert atlas.Atlas.open(location, **options).list_datasets() == ["first"]
    store.flush("four workers")
    back = atlas.Atlas.open(location, **options)
    assert back.list_datasets()[:2] == ["first", "client"]
    check_profiles(back, expected_rows(4, 6))
    assert back.history()[0].message == "four workers" and back.history()[0].added == 25


def test_merge_refuses_conflicting_or_foreign_change_sets_and_writers_do_not_flush(cluster,
                                                                                    tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    fork = store.fork()
    one, two = cluster.gather([cluster.submit(write_profiles, fork, 0, 2, pure=False),
                               cluster.submit(write_profiles, fork, 0, 2, pure=False)])
    with pytest.raises(atlas.ConflictError, match="both created dataset 'w0-00'"):
        store.merge([one, two])
    assert not store._merged  # nothing of either was taken
    other = atlas.Atlas.create(tmp_path / "other")
    with pytest.raises(ValueError, match="made on"):
        other.merge(one)
    with pytest.raises(TypeError, match="ChangeSets"):
        store.merge([{"not": "a change set"}])
    store.merge(one)
    store.flush()
    with pytest.raises(atlas.ConflictError, match="both created dataset 'w0-00'"):
        store.merge(two)  # its names were committed meanwhile
    writer = fork.writer()
    writer.create_dataset("x")
    with pytest.raises(TypeError, match="forked writer does not commit"):
        writer.flush()
    for what in (writer, writer.open_dataset("x")):  # reopened elsewhere: a plain handle
        with pytest.raises(TypeError, match="forked writer does not pickle"):
            pickle.dumps(what)
    with pytest.raises(TypeError, match="changes\\(\\) is for writers"):
        store.changes()
    check_profiles(atlas.Atlas.open(tmp_path / "s"), expected_rows(1, 2))


def test_a_dask_backed_dataset_is_written_by_the_workers(cluster, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), rng.normal(290, 3, (9, 20, 30)).astype("f4"),
                 {"units": "K"}),
         "flag": (("time",), np.arange(9, dtype="i2"))},
        coords={"time": np.arange(9).astype("datetime64[D]").astype("datetime64[ns]"),
                "lat": np.linspace(-50, 50, 20)}).chunk({"time": 4, "lat": 10})
    # the client writes no dask block itself (only the in-memory index coordinates)
    calls = []
    real = atlas.DatasetView.write_array
    monkeypatch.setattr(atlas.DatasetView, "write_array", lambda self, name, start, data: (
        calls.append((name, data.shape)), real(self, name, start, data))[1])
    store = atlas.Atlas.create(tmp_path / "s")
    store.add_xr_dataset(ds, "day")
    assert sorted(name for name, _shape in calls) == ["lat", "time"]
    np.testing.assert_array_equal(store.open_dataset("day").read_array("sst"), ds.sst.values)
    store.flush()
    back = atlas.Atlas.open(tmp_path / "s")
    xr.testing.assert_identical(back.to_xarray("day").load(), ds.load())
    stats = back.open_dataset("day").array_stats("sst")
    assert (stats["min"], stats["max"]) == (float(ds.sst.min()), float(ds.sst.max()))
    assert back.usage()["per_array"]["sst"]["segments"] > 1  # one per block, from the workers
    # dask chunks that do not hold whole atlas chunks are rechunked on the cluster
    store.add_xr_dataset(ds.chunk({"time": 3, "lat": 7}), "odd",
                         chunks={"sst": [2, 20, 30]})
    store.flush()
    xr.testing.assert_identical(atlas.Atlas.open(tmp_path / "s").to_xarray("odd").load(),
                                ds.load())


def small_files(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        xr.Dataset({"temp": (("depth",), np.arange(20, dtype="f4") + i)},
                   coords={"depth": np.arange(20.0)}, attrs={"cycle": i}).to_netcdf(
            folder / f"p{i:04d}.nc")
    return folder


def test_ingest_with_workers_matches_one_process(tmp_path, capsys):
    src = small_files(tmp_path / "src", 30)
    assert main(["ingest", str(src), str(tmp_path / "one"), "-q"]) == 0
    assert main(["ingest", str(src), str(tmp_path / "many"), "-q", "--workers", "2",
                 "--flush-every", "10"]) == 0
    capsys.readouterr()
    one, many = atlas.Atlas.open(tmp_path / "one"), atlas.Atlas.open(tmp_path / "many")
    assert many.list_datasets() == one.list_datasets()  # in file order
    for name in one.list_datasets():
        xr.testing.assert_identical(many.to_xarray(name), one.to_xarray(name))
    # a commit every 10 files, as without a cluster (tasks do not span a flush)
    assert [v.message for v in many.history()][:3] == [f"atlas ingest: 10 files from {src}"] * 3
    assert many.verify().ok
    assert main(["ingest", str(src), str(tmp_path / "x"), "--workers", "0"]) == 1
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert main(["ingest", str(src), str(tmp_path / "x"), "--workers", "2", "-j", "2"]) == 1
    assert "leave -j out" in capsys.readouterr().err


def test_ingest_with_forked_workers_into_s3_from_a_fresh_process(tmp_path, moto_s3):
    # a fresh CLI process forks its local workers (Linux) before it opens the S3 store: a
    # fork made after obstore's first request would hang in the worker
    import subprocess
    import sys

    src = small_files(tmp_path / "src", 40)
    url = f"s3://{BUCKET}/{moto_s3.new_prefix()}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT": moto_s3.endpoint, "AWS_ALLOW_HTTP": "true"}
    done = subprocess.run([sys.executable, "-c", "import sys; from atlas.cli import main; "
                           "sys.exit(main())", "ingest", str(src), url, "-q", "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert main(["ingest", str(src), str(tmp_path / "one"), "-q"]) == 0
    one = atlas.Atlas.open(tmp_path / "one")
    many = atlas.Atlas.open(url, **moto_s3.options())
    assert many.list_datasets() == one.list_datasets()
    for name in one.list_datasets():
        xr.testing.assert_identical(many.to_xarray(name), one.to_xarray(name))
    assert many.verify().ok


def test_ctrl_c_stops_an_ingest_on_forked_workers_quietly(tmp_path):
    # Ctrl-C reaches the whole process group (here: the command's own session): the command
    # stops its cluster and says what it kept; forked workers print no traceback of their own
    import subprocess
    import sys

    src = small_files(tmp_path / "src", 400)
    store_path = tmp_path / "s"
    run = subprocess.Popen([sys.executable, "-c", "import sys; from atlas.cli import main; "
                            "sys.exit(main())", "ingest", str(src), str(store_path), "-q",
                            "--workers", "2"], stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((store_path / "segments").glob("*.seg")):
        time.sleep(0.02)  # the workers are writing
    os.killpg(run.pid, signal.SIGINT)
    _out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "interrupted; nothing was written to the store" in err
    assert "Traceback" not in err, err
    # nothing was committed: the store the command created is gone, the workers' segments too
    assert not store_path.exists()


def test_a_killed_worker_leaves_the_previous_commit_and_skip_existing_completes(cluster,
                                                                                tmp_path):
    src = small_files(tmp_path / "src", 160)
    store_path = tmp_path / "s"
    atlas.Atlas.create(store_path)
    address = cluster.scheduler.address
    outcome = {}
    run = threading.Thread(target=lambda: outcome.setdefault("status", main(
        ["ingest", str(src), str(store_path), "-q", "--scheduler", address])))
    run.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list((store_path / "segments").glob("*.seg")):
        time.sleep(0.02)  # a worker has written its first segment: kill it mid-ingest
    pids = list(cluster.run(os.getpid).values())
    os.kill(pids[0], signal.SIGKILL)
    run.join(timeout=300)
    assert outcome["status"] == 1
    after = atlas.Atlas.open(store_path)
    assert after.list_datasets() == [] and after.generation == 0  # the previous commit
    assert after.verify().problems == []  # what the dead run wrote is orphans, not damage
    cluster.wait_for_workers(2, timeout=60)
    assert main(["ingest", str(src), str(store_path), "-q", "--scheduler", address,
                 "--skip-existing"]) == 0
    back = atlas.Atlas.open(store_path)
    assert back.list_datasets() == [f"p{i:04d}" for i in range(160)]
    np.testing.assert_array_equal(back.read_array_across_stacked("temp")[:, 0],
                                  np.arange(160, dtype="f4"))
    assert back.verify().ok


def test_a_scheduler_ingest_of_a_relative_folder_and_a_refused_merge(cluster, tmp_path,
                                                                    monkeypatch, capsys):
    """The workers of a scheduler run in their own folder: the files are named to them by
    absolute paths (a relative SRC failed as 'no such file'). A merge refused part-way (a
    conflict with another writer) says what the flushes before it kept."""
    small_files(tmp_path / "src", 12)
    monkeypatch.chdir(tmp_path)  # the client's folder, not the workers'
    address = cluster.scheduler.address
    assert main(["ingest", "src", "s", "-q", "--scheduler", address]) == 0
    assert atlas.Atlas.open(tmp_path / "s").list_datasets() == [f"p{i:04d}" for i in range(12)]

    merges = {"n": 0}
    real = atlas.Atlas.merge

    def refused_on_the_third(store, changes):
        merges["n"] += 1
        if merges["n"] == 3:
            raise atlas.ConflictError("cannot merge a change set: both created dataset 'x'")
        return real(store, changes)

    monkeypatch.setattr(atlas.Atlas, "merge", refused_on_the_third)
    capsys.readouterr()
    assert main(["ingest", "src", "t", "--scheduler", address, "--flush-every", "4"]) == 1
    err = capsys.readouterr().err
    assert "both created dataset 'x'" in err and "flushed before were kept" in err
    kept = atlas.Atlas.open(tmp_path / "t").list_datasets()
    assert kept and kept == [f"p{i:04d}" for i in range(len(kept))]


_MERGING_CLIENT = """
import json, pickle, sys
import atlas

store = atlas.Atlas.open(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    change_sets = pickle.load(f)
store.merge(change_sets)
store.flush("merged")
print(json.dumps(["numba" in sys.modules, len(store._root.segments["temp"])]))
"""


def test_a_client_merging_change_sets_merges_their_segments_without_numba(tmp_path):
    """The client of a distributed ingest only merges change sets and commits: the size-tiered
    merge of the workers' small segments moves whole blocks, which needs no kernel, so the
    client never pays for loading Numba (~1.3 s, most of its own work)."""
    import pickle
    import subprocess
    import sys

    store = atlas.Atlas.create(tmp_path / "s")
    fork = store.fork()
    change_sets = [write_profiles(fork, who, 3) for who in range(10)]  # 10 segments per array
    with open(tmp_path / "changes.pickle", "wb") as f:
        pickle.dump(change_sets, f)
    out = subprocess.run([sys.executable, "-c", _MERGING_CLIENT, str(tmp_path / "s"),
                          str(tmp_path / "changes.pickle")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    numba_loaded, temp_segments = json.loads(out.stdout)
    assert not numba_loaded
    assert temp_segments < 10  # the merge ran
    back = atlas.Atlas.open(tmp_path / "s")
    check_profiles(back, expected_rows(10, 3))
    assert back.verify().ok
