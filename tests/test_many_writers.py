"""Many writers (issue 18): flushes that find a newer commit merge instead of failing, and
only a true conflict raises; concurrent appender processes on a local store and on the moto
S3 server lose nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from _s3 import BUCKET, moto_s3  # noqa: F401  (fixture)

import atlas


def profile(store: atlas.Atlas, name: str, value: int, n: int = 4) -> None:
    view = store.create_dataset(name)
    view.define_array("x", "int64", ["n"], [n])
    view.write_array("x", [0], np.arange(n, dtype=np.int64) + value)
    view.set_attribute("value", value)


def contents(store: atlas.Atlas) -> dict:
    out = {}
    for name in store.list_datasets():
        view = store.open_dataset(name)
        out[name] = ({a: view.read_array(a).tolist() for a in view.list_arrays()},
                     view.attributes())
    return out


@pytest.fixture
def base(tmp_path) -> Path:
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as store:
        profile(store, "shared", 0)
        store.open_dataset("shared").define_array("y", "float32", ["m"], [2])
    return path


def test_disjoint_changes_of_two_handles_merge_like_one_sequence(base):
    a, b = atlas.Atlas.open(base), atlas.Atlas.open(base)
    expected = atlas.Atlas.open(base)  # the same changes made in sequence on one handle
    for store in (a, expected):
        for i in range(3):
            profile(store, f"a{i}", 10 + i)
        store.open_dataset("shared").set_attribute("from_a", "a")
        store.open_dataset("shared").write_array("x", [0], np.full(4, 7, np.int64))
    for store in (b, expected):
        for i in range(2):
            profile(store, f"b{i}", 20 + i, n=6)
        store.open_dataset("shared").set_attribute("from_b", "b")
        store.open_dataset("shared").write_array("y", [0], np.ones(2, np.float32))
    a.flush("a")
    b.flush("b")  # finds a's commit and re-applies on top of it
    merged = atlas.Atlas.open(base)
    assert merged.list_datasets() == ["shared", "a0", "a1", "a2", "b0", "b1"]
    assert contents(merged) == contents(expected)
    # b's handle sees the merged store and keeps working
    assert contents(b) == contents(merged)
    profile(b, "b9", 99)
    b.flush()
    assert atlas.Atlas.open(base).open_dataset("b9").read_array("x").tolist() == [99, 100,
                                                                                  101, 102]
    # stacked reads and statistics go through the renumbered slots
    stacked = merged.read_array_across_stacked("x", ["a2", "b0", "shared"], shape=[4])
    assert stacked.tolist() == [[12, 13, 14, 15], [20, 21, 22, 23], [7, 7, 7, 7]]
    assert merged.open_dataset("b1").array_stats("x")["max"] == 26
    assert [v.message for v in merged.history()[:2]] == ["b", "a"]
    # a compaction on the stale handle is re-applied on top of b9's commit; the merged
    # segments hold the remapped slots
    merged.compact(grace=0)
    profile(expected, "b9", 99)
    assert contents(atlas.Atlas.open(base)) == contents(expected) == contents(merged)
    assert atlas.Atlas.open(base).verify().ok


@pytest.mark.parametrize("first, second, what", [
    (lambda s: s.create_dataset("new"), lambda s: s.create_dataset("new"),
     "both created dataset 'new'"),
    (lambda s: s.open_dataset("shared").write_array("x", [0], np.ones(4, np.int64)),
     lambda s: s.open_dataset("shared").write_array("x", [2], np.ones(2, np.int64)),
     "both wrote array 'x' of dataset 'shared'"),
    (lambda s: s.open_dataset("shared").delete_array("y"),
     lambda s: s.open_dataset("shared").write_array("y", [0], np.ones(2, np.float32)),
     "both wrote array 'y' of dataset 'shared'"),
    (lambda s: s.open_dataset("shared").set_attribute("value", 1),
     lambda s: s.open_dataset("shared").delete_attribute("value"),
     "both set attribute 'value' of dataset 'shared'"),
    (lambda s: s.open_dataset("shared").set_array_attribute("x", "units", "m"),
     lambda s: s.open_dataset("shared").set_array_attribute("x", "units", "km"),
     "both set attribute 'units' of array 'x' of dataset 'shared'"),
    (lambda s: s.delete_dataset("shared"),
     lambda s: s.open_dataset("shared").set_attribute("note", 1),
     "the other writer deleted dataset 'shared', which this handle changed"),
    (lambda s: s.open_dataset("shared").set_attribute("note", 1),
     lambda s: s.delete_dataset("shared"),
     "this handle deleted dataset 'shared', which the other writer changed"),
    (lambda s: s.open_dataset("shared").delete_array("x"),
     lambda s: s.open_dataset("shared").set_array_attribute("x", "units", "m"),
     "the other writer deleted or redefined array 'x' of dataset 'shared', whose attributes "
     "this handle set"),
    (lambda s: s.open_dataset("shared").set_array_attribute("x", "units", "m"),
     lambda s: (s.open_dataset("shared").delete_array("x"),
                s.open_dataset("shared").define_array("x", "int64", ["n"], [4])),
     "this handle deleted or redefined array 'x' of dataset 'shared', whose attributes the "
     "other writer set"),
])
def test_a_true_conflict_raises_naming_it_and_commits_nothing(base, first, second, what):
    a, b = atlas.Atlas.open(base), atlas.Atlas.open(base)
    first(a)
    second(b)
    profile(b, "innocent", 5)  # rides along with the conflicting change: not committed either
    a.flush()
    after_a = contents(atlas.Atlas.open(base))
    with pytest.raises(atlas.ConflictError, match="conflict: " + what):
        b.flush()
    assert contents(atlas.Atlas.open(base)) == after_a
    assert atlas.Atlas.open(base).verify().problems == []


def test_what_does_not_conflict_merges(base):
    a, b = atlas.Atlas.open(base), atlas.Atlas.open(base)
    a.open_dataset("shared").set_attribute("one", 1)       # other attributes of one dataset
    b.open_dataset("shared").set_attribute("two", 2)
    a.open_dataset("shared").write_array("x", [0], np.zeros(4, np.int64))  # other arrays
    b.open_dataset("shared").write_array("y", [0], np.full(2, 3, np.float32))
    a.create_dataset("gone")
    a.flush()
    c = atlas.Atlas.open(base)
    c.delete_dataset("gone")
    c.flush()  # created then deleted by others: the name is free again
    b.create_dataset("gone").set_attribute("mine", True)
    b.flush()
    back = atlas.Atlas.open(base)
    view = back.open_dataset("shared")
    assert (view.get_attribute("one"), view.get_attribute("two")) == (1, 2)
    assert view.read_array("x").tolist() == [0, 0, 0, 0]
    assert view.read_array("y").tolist() == [3.0, 3.0]
    assert back.open_dataset("gone").attributes() == {"mine": True}


@pytest.mark.parametrize("through_a_fork", [False, True])
def test_a_delete_rebased_over_a_replacement_keeps_the_new_dataset(base, through_a_fork):
    """One handle deletes ``shared``; meanwhile another deletes it and creates a new
    ``shared`` in one commit. Both deleted the old dataset, so the delete merges, and the new
    one stays: found by name on a fresh handle (which searches the parts' names newest first,
    past the rebased tombstone of the old one) and not creatable a second time."""
    a = atlas.Atlas.open(base)
    if through_a_fork:
        writer = a.fork().writer()
        writer.delete_dataset("shared")
        changes = writer.changes()
    else:
        a.delete_dataset("shared")
    b = atlas.Atlas.open(base)
    b.delete_dataset("shared")
    profile(b, "shared", 7)
    b.flush()
    if through_a_fork:
        a = atlas.Atlas.open(base)
        a.merge(changes)
    a.flush()
    back = atlas.Atlas.open(base)
    assert "shared" in back
    assert back.open_dataset("shared").read_array("x").tolist() == [7, 8, 9, 10]
    with pytest.raises(atlas.AlreadyExistsError):
        atlas.Atlas.open(base).create_dataset("shared")
    assert back.list_datasets() == ["shared"]
    assert back.verify().problems == []


def test_verify_reports_two_live_datasets_of_one_name(base):
    store = atlas.Atlas.open(base)
    catalog = store._catalog  # the bulk create trusts its caller to have checked the name
    catalog.create_many(["shared"], np.array([catalog.next_did]))
    store.flush()
    problems = atlas.Atlas.open(base).verify().problems
    assert any("two live datasets are named 'shared'" in p for p in problems), problems


def test_a_handle_keeps_writing_new_shapes_after_a_rebase(base):
    """A rebase renumbers the handle's new array shapes; later writes must find them."""
    a, b = atlas.Atlas.open(base), atlas.Atlas.open(base)
    for store, who in ((a, "a"), (b, "b"), (b, "b2"), (a, "a2")):
        view = store.create_dataset(who)
        view.define_array("grid", "float32", ["y", "x"], [3, 5], [2, 2], float("nan"))
        view.write_array("grid", [0, 0], np.full((3, 5), len(who), np.float32))
        store.flush()  # b's first flush rebases over a's new shape
    back = atlas.Atlas.open(base)
    for who in ("a", "b", "b2", "a2"):
        assert back.open_dataset(who).read_array("grid").tolist() == [[len(who)] * 5] * 3


def test_a_flush_rebases_over_a_compaction_and_an_expire(base):
    writer = atlas.Atlas.open(base)
    for i in range(20):
        profile(writer, f"w{i}", i)
    other = atlas.Atlas.open(base)
    other.delete_dataset("shared")
    other.flush()
    other.compact()  # no delta: files replaced, data the same
    writer.flush()
    back = atlas.Atlas.open(base)
    assert back.list_datasets() == [f"w{i}" for i in range(20)]
    assert back.read_array_across_stacked("x", [f"w{i}" for i in range(20)])[:, 0].tolist() == \
        list(range(20))
    assert back.verify().ok


@pytest.mark.parametrize("grid", [False, True])
def test_writers_that_always_rebase_still_merge_their_small_files(base, grid):
    """Two handles flushing in turn: every flush after the first finds the other's commit and
    rebases. Those flushes run the size-tiered merge too (they dropped it, and the files of a
    contended store piled up, one segment per flush per array and one part per flush)."""
    a, b = atlas.Atlas.open(base), atlas.Atlas.open(base)
    expected = {}
    for i in range(40):
        store, name = (a, f"a{i}") if i % 2 == 0 else (b, f"b{i}")
        profile(store, name, i)
        expected[name] = i
        if grid:  # a chunked array: merges of this handle's segments read them remapped
            view = store.open_dataset(name)
            view.define_array("g", "float32", ["y", "x"], [3, 4], [2, 2], float("nan"))
            view.write_array("g", [0, 0], np.full((3, 4), i, np.float32))
        store.flush()
    root = atlas.Atlas.open(base)._root
    assert len(root.parts) <= 12 and all(len(refs) <= 12 for refs in root.segments.values()), \
        (len(root.parts), {k: len(v) for k, v in root.segments.items()})
    back = atlas.Atlas.open(base)
    assert back.list_datasets() == ["shared", *expected]
    got = back.read_array_across_stacked("x", list(expected))
    assert got.tolist() == [(np.arange(4) + v).tolist() for v in expected.values()]
    if grid:
        g = back.read_array_across_stacked("g", list(expected))
        assert g.tolist() == [np.full((3, 4), v).tolist() for v in expected.values()]
    assert [back.open_dataset(n).get_attribute("value") for n in expected] == \
        list(expected.values())
    assert back.verify().ok
    # each handle goes on from where its rebases left it
    profile(a, "last", 99)
    a.flush()
    assert atlas.Atlas.open(base).open_dataset("last").read_array("x").tolist() == \
        (np.arange(4) + 99).tolist()


def test_a_rebase_over_expired_versions_is_refused(base):
    writer = atlas.Atlas.open(base)
    profile(writer, "late", 1)
    other = atlas.Atlas.open(base)
    profile(other, "early", 2)
    other.flush()
    profile(other, "later", 3)
    other.flush()
    other.expire(older_than=0, keep_last=1)  # "early"'s commit, which writer must see, is gone
    with pytest.raises(atlas.ConflictError, match="expired"):
        writer.flush()
    assert atlas.Atlas.open(base).list_datasets() == ["shared", "early", "later"]


def test_a_rebase_whose_delta_part_went_meanwhile_is_a_conflict(base):
    """An expire running beside the flush can delete a newer commit's delta part after the
    flush read the chain of records: the flush says so as a ConflictError (it used to raise
    CorruptionError, calling a sound store damaged). Simulated by deleting the part."""
    writer = atlas.Atlas.open(base)
    profile(writer, "late", 1)
    other = atlas.Atlas.open(base)
    profile(other, "early", 2)
    other.flush()
    before = atlas.Atlas.open(base).list_datasets()
    (Path(base) / other._root.delta).unlink()
    with pytest.raises(atlas.ConflictError, match="expired"):
        writer.flush()
    assert atlas.Atlas.open(base).version == other.version  # nothing was committed
    assert before == ["shared", "early"]


def test_a_definition_two_writers_interned_apart_is_one_definition(base):
    """Two writers each define `v` the same way: after the rebases the catalog holds that
    definition under two schema ids. Writing again to a dataset of either used to raise
    'defined as X; the stacked write gives X' with X the same."""
    b, c = atlas.Atlas.open(base), atlas.Atlas.open(base)

    def write(handle, names, value):
        handle.write_array_across_stacked("v", names, np.full((len(names), 4), value),
                                          dims=["depth"])
        handle.flush()

    write(c, ["c0"], 1.0)
    write(b, ["b0"], 2.0)  # rebases over c: its own schema id is shifted
    write(c, ["c1"], 3.0)  # rebases over b
    write(c, ["c0", "b0"], 4.0)
    back = atlas.Atlas.open(base)
    assert back.read_array_across_stacked("v", ["c0", "b0", "c1"])[:, 0].tolist() == [4, 4, 3]
    with pytest.raises(ValueError, match="defined as float64"):
        c.write_array_across_stacked("v", ["c0"], np.zeros((1, 4)), dims=["other"])


def test_writes_after_merging_change_sets_define_new_arrays_after_theirs(base):
    """A handle that merges forked writers' change sets and then writes before its flush:
    its new definitions are numbered after the change sets' (it raised 'the catalog holds N
    schemas, its root counts M'), and everything reads back after the flush."""
    store = atlas.Atlas.open(base)
    fork = store.fork()
    writer = fork.writer()
    writer.write_array_across_stacked("v", ["f0"], np.zeros((1, 4)), dims=["d"])
    writer.write_array_across_stacked("w", ["f0"], np.zeros((1, 2), np.int32), dims=["e"])
    store.merge([writer.changes()])
    store.write_array_across_stacked("v", ["m0"], np.ones((1, 4)), dims=["d"])
    store.write_array_across_stacked("u", ["m0"], np.full((1, 3), 5, np.int16), dims=["k"])
    store.flush()
    back = atlas.Atlas.open(base)
    assert back.read_array_across_stacked("v", ["f0", "m0"]).tolist() == [[0] * 4, [1] * 4]
    assert back.read_array_across_stacked("u", ["m0"]).tolist() == [[5] * 3]
    assert back.read_array_across_stacked("w", ["f0"]).dtype == np.int32
    assert back.verify().ok


def _net_nothing(store: atlas.Atlas) -> "atlas.core._fork.ChangeSet":
    """A change set that creates and deletes a dataset: no rows conflict, one segment."""
    writer = store.fork().writer()
    profile(writer, "tmp", 1)
    writer.delete_dataset("tmp")
    return writer.changes()


def test_one_change_set_merged_twice_is_refused_every_way(base):
    """Its segments would be listed twice: a root no reader opens (it was committed)."""
    store = atlas.Atlas.open(base)
    change = _net_nothing(store)
    with pytest.raises(atlas.ConflictError, match="merged before .* not flushed yet"):
        store.merge([change, change])
    assert not store._merged
    store.merge(change)
    with pytest.raises(atlas.ConflictError, match="merged before .* not flushed yet"):
        store.merge(change)
    store.flush()
    with pytest.raises(atlas.ConflictError, match="merged before .* is committed"):
        store.merge(change)
    one, two = atlas.Atlas.open(base), atlas.Atlas.open(base)
    change = _net_nothing(one)
    one.merge(change)
    two.merge(change)
    one.flush()
    with pytest.raises(atlas.ConflictError, match="both committed the segment"):
        two.flush()
    after = atlas.Atlas.open(base)
    assert after.list_datasets() == ["shared"] and after.verify().ok


@pytest.mark.parametrize("own, what", [
    (lambda s: profile(s, "A", 9), "both created dataset 'A'"),
    (lambda s: s.open_dataset("shared").write_array("x", [0], np.full(4, 7, np.int64)),
     "both wrote array 'x' of dataset 'shared'"),
    (lambda s: s.open_dataset("shared").set_attribute("value", 7),
     "both set attribute 'value' of dataset 'shared'"),
])
def test_changes_made_after_a_merge_are_checked_against_the_merged_change_sets(base, own,
                                                                              what):
    """They were not: the flush kept both datasets named 'A', or one write and the other's
    statistics."""
    store = atlas.Atlas.open(base)
    writer = store.fork().writer()
    profile(writer, "A", 5)
    writer.open_dataset("shared").write_array("x", [0], np.full(4, 5, np.int64))
    writer.open_dataset("shared").set_attribute("value", 5)
    store.merge(writer.changes())
    own(store)
    with pytest.raises(atlas.ConflictError, match="conflict with a change set it merged: "
                                                  + what):
        store.flush()
    back = atlas.Atlas.open(base)
    assert back.list_datasets() == ["shared"] and back.verify().ok


def test_a_client_that_keeps_no_versions_merges_every_change_set_of_its_fork(base):
    """Its own flushes expired the fork's version, which merging a later change set of that
    fork reads (an ingest with --workers and --flush-every stopped part-way); another
    handle's expire still can, and the merge then says so."""
    store = atlas.Atlas.open(base)
    store.set_retention(older_than=0, keep_last=1)
    fork = store.fork()
    changes = []
    for i in range(6):
        writer = fork.writer()
        profile(writer, f"w{i}", i)
        changes.append(writer.changes())
    for change in changes[:4]:
        store.merge(change)
        store.flush()
    assert atlas.Atlas.open(base).list_datasets() == ["shared", "w0", "w1", "w2", "w3"]
    atlas.Atlas.open(base).expire(older_than=0, keep_last=1)  # no fork of its own
    with pytest.raises(atlas.ConflictError, match="since its fork .* have expired"):
        store.merge(changes[4])


def test_a_merge_conflict_names_each_side_rightly(base):
    store = atlas.Atlas.open(base)
    writer = store.fork().writer()
    writer.open_dataset("shared").set_attribute("note", 1)
    store.delete_dataset("shared")
    with pytest.raises(atlas.ConflictError, match="this handle's pending changes deleted "
                                                  "dataset 'shared', which the change set"):
        store.merge(writer.changes())


def _append(location: str, options: dict, who: int, count: int, queue) -> None:
    try:
        store = atlas.Atlas.open(location, **options)
        for i in range(count):
            profile(store, f"w{who}-{i:03d}", who * 1000 + i)
            store.flush(f"{who}/{i}")  # no retry loop: a newer commit is merged, not an error
        queue.put((who, "ok"))
    except BaseException as err:  # noqa: BLE001 - reported to the test
        queue.put((who, f"{type(err).__name__}: {err}"))


def run_appenders(location: str, options: dict, writers: int, count: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_append, args=(location, options, w, count, queue))
             for w in range(writers)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == {w: "ok" for w in range(writers)}
    store = atlas.Atlas.open(location, **options)
    names = store.list_datasets()
    expected = {f"w{w}-{i:03d}" for w in range(writers) for i in range(count)}
    assert set(names) - {"shared"} == expected and len(names) == len(expected) + 1
    for w in range(writers):  # each writer's datasets in the order it created them
        mine = [n for n in names if n.startswith(f"w{w}-")]
        assert mine == sorted(mine)
    values = store.read_array_across_stacked("x", sorted(expected), shape=[4])[:, 0]
    assert values.tolist() == [int(n[1:].split("-")[0]) * 1000 + int(n.split("-")[1])
                               for n in sorted(expected)]
    assert len(store.history()) >= writers * count  # every flush is a version
    assert store.verify().ok


def test_eight_local_appender_processes_lose_nothing(base):
    run_appenders(str(base), {}, writers=8, count=25)


def test_appender_processes_on_s3_lose_nothing(moto_s3):  # noqa: F811
    location = f"s3://{BUCKET}/{moto_s3.new_prefix()}"
    options = moto_s3.options()
    with atlas.Atlas.create(location, **options) as store:
        profile(store, "shared", 0)
    run_appenders(location, options, writers=4, count=8)




def _flush_until(location: str, options: dict, who: int, start: float, stop: float,
                 queue) -> None:
    import time

    store = atlas.Atlas.open(location, **options)
    while time.time() < start:
        time.sleep(0.001)
    done = 0
    while time.time() < stop:
        profile(store, f"w{who}-{done:05d}", done)
        store.flush()
        done += 1
    queue.put((who, done))


def race_two_writers(location: str, options: dict, seconds: float, least: int) -> None:
    """Two processes flushing one dataset after another for ``seconds``, from one start: the
    one with fewer flushes makes at least a quarter of the other's (which makes ``least``, for
    the comparison to mean much), and nothing is lost."""
    import time

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = time.time() + 6  # after both have imported atlas and opened the store
    procs = [ctx.Process(target=_flush_until, args=(location, options, w, start,
                                                    start + seconds, queue)) for w in range(2)]
    for p in procs:
        p.start()
    done = dict(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert max(done.values()) >= least, done
    assert min(done.values()) * 4 >= max(done.values()), done
    names = atlas.Atlas.open(location, **options).list_datasets()
    assert sum(n.startswith("w") for n in names) == sum(done.values())


def test_writers_that_flush_without_pause_share_the_store_fairly(base):
    """Each rebase attempt holds a local store's commit lock, so it lands: racing, a writer
    that had to rebase lost every race to one that flushes without pause (5 flushes against
    1,346 in 10 s here, one of them waiting 12 s)."""
    race_two_writers(str(base), {}, 3, least=20)


def test_writers_that_flush_without_pause_share_an_object_store_fairly(moto_s3):  # noqa: F811
    """On an object store a writer that lost a race takes its turn with a claim object that
    writers committing often respect (racing, it lost every race: 1 flush against 154 in
    10 s on the moto server)."""
    location = f"s3://{BUCKET}/{moto_s3.new_prefix()}"
    options = moto_s3.options()
    atlas.Atlas.create(location, **options).close()
    race_two_writers(location, options, 4, least=10)


def test_a_claim_left_by_a_writer_that_died_lapses(moto_s3, monkeypatch):  # noqa: F811
    import json
    import time

    from atlas.format.keys import CLAIM_KEY
    from atlas.storage import _obstore

    monkeypatch.setattr(_obstore, "CLAIM_SECONDS", 0.6)
    raw = moto_s3.store()
    store = atlas.Atlas.create(raw)
    profile(store, "first", 1)
    store.flush()  # a writer that committed just now reads the claim before it commits again

    def timed_flush(name: str) -> float:
        profile(store, name, 2)
        begin = time.monotonic()
        store.flush()
        return time.monotonic() - begin

    raw.put(CLAIM_KEY, json.dumps({"owner": "gone", "until": time.time() + 0.5}).encode())
    assert timed_flush("waits") >= 0.3  # another's live claim: it waits until it lapses
    raw.put(CLAIM_KEY, b"not json")  # a claim that does not decode has lapsed
    assert timed_flush("damaged") < 0.3
    raw.put(CLAIM_KEY, b'{"owner": "gone", "until": NaN}')
    assert timed_flush("nan") < 0.3
    # a claimant whose clock runs an hour ahead: the claim holds as long as any claim does
    raw.put(CLAIM_KEY, json.dumps({"owner": "ahead", "until": time.time() + 3600}).encode())
    assert 0.4 <= timed_flush("ahead") < 5
    # a writer that lost a race takes its turn over a lapsed claim, then drops its own
    with store._storage.commit_turn():
        owner = json.loads(bytes(raw.get(CLAIM_KEY).bytes()))["owner"]
        assert owner == store._storage._claimant
    with pytest.raises(FileNotFoundError):
        raw.get(CLAIM_KEY)
    assert store.list_datasets() == ["first", "waits", "damaged", "nan", "ahead"]
    assert store.verify().ok
