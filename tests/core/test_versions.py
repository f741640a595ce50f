"""Versions (issue 19): every commit can be opened again until it expires; checked against a
model of what each commit held."""

from __future__ import annotations

import datetime as dt
import pickle
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas
from atlas.core._maintain import FANOUT
from atlas.storage import LocalStorage

NAMES = [f"d{i}" for i in range(6)]


def snapshot(store: atlas.Atlas) -> dict:
    """Everything a version holds, as plain values: names in order, arrays and attributes."""
    out = {}
    for name in store.list_datasets():
        view = store.open_dataset(name)
        out[name] = {"arrays": {a: view.read_array(a).tolist() for a in view.list_arrays()},
                     "attrs": view.attributes()}
    return out


def random_commit(store: atlas.Atlas, rng: random.Random, step: int) -> str:
    """One commit of random changes (creates, writes, deletes, re-creations, attributes,
    sometimes a compaction); returns its message."""
    kind = rng.random()
    if kind < 0.12 and len(store):
        store.compact()  # the default retention: nothing expires yet
        return "compact"
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(NAMES)
        action = rng.random()
        if name not in store:
            view = store.create_dataset(name)
            view.define_array("x", "int64", ["n"], [4], chunk_shape=[2])
            view.write_array("x", [0], np.arange(4, dtype=np.int64) + step)
            view.set_attribute("born", step)
        elif action < 0.3:
            store.delete_dataset(name)
        elif action < 0.7:
            store.open_dataset(name).write_array("x", [rng.randint(0, 2)],
                                                 np.full(2, step, np.int64))
        else:
            store.open_dataset(name).set_attribute("touched", step)
    message = f"step {step}"
    store.flush(message)
    return message


def check_every_kept_version(path: Path, model: dict[int, dict]) -> list[int]:
    """Each version in the history reads back what the model says it held; the others are
    reported expired. Returns the generations kept."""
    store = atlas.Atlas.open(path)
    kept = [v.generation for v in store.history()]
    assert kept == sorted(kept, reverse=True) and kept[0] == store.version
    for generation, expected in model.items():
        if generation in kept:
            old = atlas.Atlas.open(path, version=generation)
            assert old.version == generation
            assert snapshot(old) == expected, generation
            if old.list_datasets():  # the stacked read path as well
                names = old.list_datasets()
                stacked = old.read_array_across_stacked("x", names)
                assert stacked.tolist() == [expected[n]["arrays"]["x"] for n in names]
        elif generation < kept[0]:
            with pytest.raises(atlas.VersionExpiredError, match="expired"):
                atlas.Atlas.open(path, version=generation)
    return kept


def model_of(path: Path) -> dict[int, dict]:
    """Snapshots of every version still in the history (taken while all were kept)."""
    return {v.generation: snapshot(atlas.Atlas.open(path, version=v.generation))
            for v in atlas.Atlas.open(path).history()}


@settings(max_examples=12)
@given(seed=st.integers(0, 2**31), commits=st.integers(3, 12),
       keep_last=st.integers(1, 4), tagged=st.lists(st.integers(0, 20), max_size=2))
def test_every_retained_version_reads_what_was_committed_then(seed, commits, keep_last, tagged):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s"
        rng = random.Random(seed)
        store = atlas.Atlas.create(path)
        expected = {0: {}}
        for step in range(1, commits + 1):
            random_commit(store, rng, step)
            expected[store.version] = snapshot(store)
        # compactions add versions of their own that the loop did not snapshot: take them
        # from the history while nothing has expired yet
        history = store.history()
        assert [v.generation for v in history] == list(range(store.version, -1, -1))
        for version in history:
            if version.generation not in expected:
                expected[version.generation] = snapshot(atlas.Atlas.open(
                    path, version=version.generation))
        for g in tagged:
            if g <= store.version:
                try:
                    store.tag(f"t{g}", g)
                except atlas.AlreadyExistsError:
                    pass
        check_every_kept_version(path, expected)
        store.expire(older_than=0, keep_last=keep_last)
        kept = check_every_kept_version(path, expected)
        latest = store.version
        must_keep = {g for g in tagged if g <= latest} | set(range(latest - keep_last + 1,
                                                                    latest + 1))
        assert must_keep & set(range(latest + 1)) <= set(kept) | {
            g for g in must_keep if g not in expected}
        assert store.verify().ok
        # a store written further after an expire keeps working, and its history with it
        random_commit(store, rng, commits + 1)
        expected[store.version] = snapshot(store)
        check_every_kept_version(path, expected)


def test_history_lists_messages_and_counts_newest_first(store_path):
    store = atlas.Atlas.create(store_path)
    for name in ("a", "b", "c"):
        store.create_dataset(name).set_attribute("k", 1)
    store.flush("three")
    store.open_dataset("a").set_attribute("k", 2)
    store.delete_dataset("b")
    store.create_dataset("d")
    store.flush("edit")
    store.delete_dataset("c")
    store.create_dataset("c")  # a re-creation: one deleted, one added
    store.flush()
    history = store.history()
    assert [(v.generation, v.message, v.added, v.changed, v.deleted) for v in history] == [
        (3, None, 1, 0, 1), (2, "edit", 1, 1, 1), (1, "three", 3, 0, 0),
        (0, "create", 0, 0, 0)]
    assert all(v.time.tzinfo is not None for v in history)
    assert history[0].time >= history[-1].time
    with pytest.raises(TypeError, match="message"):
        store.flush(message=5)


def test_open_by_generation_tag_and_time_and_every_reader_works_on_it(store_path):
    import xarray as xr

    store = atlas.Atlas.create(store_path)
    store.add_xr_dataset(xr.Dataset({"t": ("x", np.arange(3.0))}, attrs={"v": 1}), "one")
    store.flush()
    mid = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.05)
    store.delete_dataset("one")
    store.add_xr_dataset(xr.Dataset({"t": ("x", np.arange(3.0) * 10)}, attrs={"v": 2}), "one")
    store.flush()
    store.tag("first", 1)
    assert store.tags() == {"first": 1}
    for spec in (1, "first", mid, np.datetime64(mid.replace(tzinfo=None), "us")):
        old = atlas.Atlas.open(store_path, version=spec)
        assert old.version == 1
        assert old.to_xarray("one").attrs["v"] == 1
        np.testing.assert_array_equal(old.read_array_across_stacked("t", ["one"])[0],
                                      np.arange(3.0))
        assert old.catalog(arrays=["t"])["t.max"].tolist() == [2.0]
        names, batch = next(iter(old.batches("t", batch_size=1, shuffle=False)))
        assert names == ["one"] and batch[0].tolist() == [0.0, 1.0, 2.0]
    through_xarray = xr.open_dataset(store_path, engine="atlas", group="one", version="first")
    assert through_xarray.attrs["v"] == 1
    assert xr.open_dataset(store_path, engine="atlas", group="one").attrs["v"] == 2
    # a pickled versioned handle (what dask ships to workers) opens the same version
    clone = pickle.loads(pickle.dumps(atlas.Atlas.open(store_path, version="first")))
    assert clone.version == 1 and clone.to_xarray("one").attrs["v"] == 1


def test_a_version_handle_is_read_only_and_bad_versions_say_why(store_path):
    store = atlas.Atlas.create(store_path)
    store.create_dataset("a")
    store.flush()
    store.create_dataset("b")
    store.flush()
    old = atlas.Atlas.open(store_path, version=1)
    for attempt in (lambda: old.create_dataset("c"), lambda: old.delete_dataset("a"),
                    lambda: old.open_dataset("a").set_attribute("k", 1), old.compact,
                    lambda: old.expire(older_than=0), lambda: old.tag("x")):
        with pytest.raises(atlas.ReadOnlyError, match="version 1"):
            attempt()
    with pytest.raises(atlas.VersionNotFoundError, match="no version 7: versions go from 0 to 2"):
        atlas.Atlas.open(store_path, version=7)
    with pytest.raises(atlas.VersionNotFoundError, match="no tag 'nope'"):
        atlas.Atlas.open(store_path, version="nope")
    with pytest.raises(atlas.VersionNotFoundError, match="first commit is later"):
        atlas.Atlas.open(store_path, version=dt.datetime(2001, 1, 1))
    with pytest.raises(TypeError, match="generation"):
        atlas.Atlas.open(store_path, version=1.5)
    with pytest.raises(TypeError, match="generation"):  # a numpy integer subclass
        atlas.Atlas.open(store_path, version=np.timedelta64(1, "s"))
    import pandas as pd

    for nat in (pd.NaT, np.datetime64("NaT")):
        with pytest.raises(ValueError, match="must not be NaT"):
            atlas.Atlas.open(store_path, version=nat)
    with pytest.raises(ValueError, match="tag name"):
        store.tag("../x")
    store.tag("keep", 1)
    with pytest.raises(atlas.AlreadyExistsError, match="already exists"):
        store.tag("keep")
    store.delete_tag("keep")
    with pytest.raises(atlas.VersionNotFoundError):
        store.delete_tag("keep")
    store.expire(older_than=0, keep_last=1)
    with pytest.raises(atlas.VersionExpiredError, match="version 1 .* expired"):
        atlas.Atlas.open(store_path, version=1)
    with pytest.raises(atlas.VersionExpiredError):
        store.tag("late", 1)


def test_tagged_versions_survive_expiry_and_compaction_frees_the_rest(store_path):
    store = atlas.Atlas.create(store_path)
    for step in range(6):
        view = store.create_dataset(f"d{step}") if step < 3 else store.open_dataset("d0")
        if step < 3:
            view.define_array("x", "float64", ["n"], [1000])
        view.write_array("x", [0], np.full(1000, float(step)))
        store.flush()
    store.tag("three", 3)
    before = snapshot(atlas.Atlas.open(store_path, version="three"))
    store.compact(grace=0)  # everything but the latest and the tagged version goes
    assert [v.generation for v in store.history()] == [8, 7, 3]
    assert snapshot(atlas.Atlas.open(store_path, version="three")) == before
    store.delete_tag("three")
    freed = store.expire(older_than=0)
    assert freed["files_removed"] > 0 and freed["bytes_freed"] > 0
    assert [v.generation for v in store.history()] == [9, 8]
    assert store.verify().ok and store.verify().orphans == []


def test_a_tag_written_while_an_expire_drops_its_version_keeps_it_or_says_expired(
        store_path, monkeypatch):
    """An expire plans from the tags it read, then deletes records; a tag() landing in
    between either keeps its version readable (the record is put back, its files stay) or
    raises VersionExpiredError and leaves no tag: never a tag naming a lost version."""
    from atlas.core import _versions

    real_drop, real_tags = _versions.drop_records, _versions.all_tags
    for when in ("before the records go", "after they went"):
        if store_path.exists():
            shutil.rmtree(store_path)
        store = atlas.Atlas.create(store_path)
        for step in range(4):
            view = store.create_dataset(f"d{step}")
            view.define_array("x", "float64", ["n"], [100])
            view.write_array("x", [0], np.full(100, float(step)))
            store.flush()
        expected = snapshot(atlas.Atlas.open(store_path, version=2))
        tagger, outcome = atlas.Atlas.open(store_path), []

        def tag_now():
            try:
                outcome.append(tagger.tag("keep", version=2))
            except atlas.VersionExpiredError as err:
                outcome.append(err)

        def drop_after_a_tag(storage, keys):
            tag_now()
            return real_drop(storage, keys)

        def tags_after_a_tag(storage):
            monkeypatch.setattr(_versions, "all_tags", real_tags)
            tag_now()
            return real_tags(storage)

        if when == "before the records go":
            monkeypatch.setattr(_versions, "drop_records", drop_after_a_tag)
        else:  # the records are gone when the expire reads the tags again
            monkeypatch.setattr(_versions, "drop_records", lambda storage, keys: (
                monkeypatch.setattr(_versions, "all_tags", tags_after_a_tag),
                real_drop(storage, keys))[1])
        store.expire(older_than=0)
        monkeypatch.setattr(_versions, "drop_records", real_drop)
        monkeypatch.setattr(_versions, "all_tags", real_tags)
        if outcome == [2]:
            assert store.tags() == {"keep": 2}
            assert snapshot(atlas.Atlas.open(store_path, version="keep")) == expected
        else:
            assert isinstance(outcome[0], atlas.VersionExpiredError) and store.tags() == {}
        assert store.verify().ok, store.verify().problems

def test_verify_reports_a_lost_record_of_the_newest_or_a_tagged_version(store_path):
    """No retention removes those records: one that is gone was lost (the version would
    silently read as expired), while the records expiry removes are no problem."""
    store = atlas.Atlas.create(store_path)
    for step in range(4):
        store.create_dataset(f"d{step}")
        store.flush(f"step {step}")
    store.tag("kept", 2)
    store.expire(older_than=0, keep_last=1)  # every untagged older version goes: no problem
    kept = [v.generation for v in store.history()]
    assert kept[-1] == 2 and 1 not in kept and 3 not in kept
    assert store.verify().ok
    records = {int(p.name[:12]): p for p in (store_path / "versions").iterdir()}
    for generation, what in ((2, "version 2, tagged 'kept',"), (kept[0], "the newest version")):
        records[generation].unlink()
        problems = atlas.Atlas.open(store_path).verify().problems
        assert any(f"{records[generation].name}: the record of {what} is missing" in problem
                   for problem in problems), problems


def test_a_damaged_root_leaves_the_versions_whose_records_read_readable(store_path):
    """One flipped byte in manifest.atlas: opening the store names the newest version that
    still reads, that version (and older ones) open with ``version=``, and ``verify_store``
    reports the damage instead of raising."""
    store = atlas.Atlas.create(store_path)
    committed = []
    for step in range(3):
        view = store.create_dataset(f"d{step}")
        view.define_array("x", "int64", ["n"], [4], chunk_shape=[4])
        view.write_array("x", [0], np.arange(4, dtype=np.int64) * step)
        store.flush(f"step {step}")
        committed.append(snapshot(store))
    newest = store.history()[0].generation
    manifest = store_path / "manifest.atlas"
    data = bytearray(manifest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    manifest.write_bytes(bytes(data))

    with pytest.raises(atlas.CorruptionError, match=f"manifest.atlas.*version={newest}"):
        atlas.Atlas.open(store_path)
    for back, expected in enumerate(reversed(committed)):
        assert snapshot(atlas.Atlas.open(store_path, version=newest - back)) == expected
    report = atlas.Atlas.verify_store(store_path)
    assert not report.ok and report.location == str(store_path)
    assert len(report.problems) == 1 and f"version {newest}" in report.problems[0]

    for record in (store_path / "versions").iterdir():  # nothing left that reads: no hint
        record.write_bytes(b"ATLROOT2" + bytes(40))
    with pytest.raises(atlas.CorruptionError, match="manifest.atlas") as caught:
        atlas.Atlas.open(store_path, version=newest)
    assert "version=" not in str(caught.value)


def test_a_retention_beyond_what_a_root_holds_is_refused_not_committed(store_path):
    """A policy the root format cannot hold would commit a root no one can read again."""
    store = atlas.Atlas.create(store_path)
    for bad in (dict(keep_last=2**62), dict(older_than=dt.timedelta(days=10**7)),
                dict(older_than=3e11), dict(older_than=float("inf")),
                dict(older_than=float("nan"))):
        with pytest.raises(ValueError, match="keep_last|older_than"):
            store.set_retention(**bad)
        with pytest.raises(ValueError, match="keep_last|older_than"):
            store.expire(**bad)
    assert atlas.Atlas.open(store_path).history()[0].generation == 0
    store.set_retention(older_than=dt.timedelta(days=365 * 7000), keep_last=2**62 - 1)
    assert atlas.Atlas.open(store_path).retention == {
        "older_than": 365 * 7000 * 86400.0, "keep_last": 2**62 - 1}


def test_compact_with_a_grace_keeps_no_more_versions_than_the_grace(store_path):
    """grace=0 keeps the compaction's commit, the expiry's, the tagged ones: also under a
    policy of keep_last=5 (which a compaction without a grace follows)."""
    store = atlas.Atlas.create(store_path)
    store.set_retention(older_than=0, keep_last=5)
    for step in range(8):
        store.write_array_across_stacked("v", ["a", "b"], np.full((2, 3), step, np.float64))
        store.flush()
    store.tag("t", 3)
    store.compact()
    assert len(store.history()) >= 5 + 1  # the policy's last 5 at least, and the tagged one
    store.set_retention(older_than=7 * 86400, keep_last=5)
    store.compact(grace=0)
    kept = [v.generation for v in store.history()]
    assert len(kept) == 3 and 3 in kept and kept[0] == store.version
    assert store.verify().ok and store.verify().orphans == []


def test_a_version_by_time_ignores_a_record_committed_after_the_root_was_read(store_path):
    """The root is read, then the records are listed: another writer's commit in between
    left a record above the root's generation, which the search asked for ('no version 4')."""
    store = atlas.Atlas.create(store_path)
    for step in range(3):
        store.create_dataset(f"d{step}")
        store.flush()
    second = store.history()[1]
    (store_path / "versions" / f"{4:012d}-{'e' * 32}.root").write_bytes(b"a later commit's")
    when = second.time + dt.timedelta(microseconds=1)
    assert atlas.Atlas.open(store_path, version=when).version == second.generation


def test_verify_reports_a_file_in_place_of_the_tags_folder_and_odd_files_in_it(store_path):
    """Either hides the tags: tags() lists none and an expire takes the tagged versions."""
    store = atlas.Atlas.create(store_path)
    store.create_dataset("d")
    store.flush()
    store.tag("rel", 1)
    assert store.verify().ok
    (store_path / "tags" / "rel").unlink()
    (store_path / "tags" / "rel").mkdir()
    (store_path / "tags" / "rel" / "x").write_bytes(b"{}")
    assert any("tags/rel/x: is not a tag" in p for p in store.verify().problems)
    shutil.rmtree(store_path / "tags")
    (store_path / "tags").write_bytes(b"x")
    assert any("tags: is a file where atlas keeps a folder" in p
               for p in store.verify().problems)


def test_a_commit_message_too_big_for_a_root_is_refused_and_the_changes_stay(store_path):
    from atlas.core._versions import MAX_MESSAGE_BYTES

    store = atlas.Atlas.create(store_path)
    store.create_dataset("e")
    with pytest.raises(ValueError, match="at most"):
        store.flush(message="é" * (MAX_MESSAGE_BYTES // 2 + 1))
    assert "e" in store and "e" not in atlas.Atlas.open(store_path)
    store.flush(message="é" * (MAX_MESSAGE_BYTES // 2))
    assert atlas.Atlas.open(store_path).history()[0].message == "é" * (MAX_MESSAGE_BYTES // 2)


def test_the_retention_policy_is_stored_and_flushes_expire_by_it(store_path, monkeypatch):
    store = atlas.Atlas.create(store_path)
    assert store.retention == {"older_than": 7 * 24 * 3600.0, "keep_last": 1}
    store.set_retention(older_than=0, keep_last=3)
    assert atlas.Atlas.open(store_path).retention == {"older_than": 0.0, "keep_last": 3}
    with pytest.raises(ValueError, match="keep_last must be an int >= 1"):
        store.set_retention(keep_last=0)
    with pytest.raises(ValueError, match="older_than"):
        store.set_retention(older_than=-1)
    monkeypatch.setattr("atlas.core._maintain.AUTO_EXPIRE_EVERY_SECONDS", 0.0)
    for step in range(40):  # enough flushes for the automatic merges to retire files
        store.create_dataset(f"d{step}").set_attribute("k", step)
        store.flush()
    kept = [v.generation for v in store.history()]
    # flushes expire when their merges have files to free: between two merges the records
    # of a few more versions wait
    assert len(kept) <= 3 + FANOUT + 1 and kept[0] == store.version
    assert len(store._root.retired) <= 2 * FANOUT  # what merges replaced was freed
    assert store.verify().ok
    for generation in kept:
        assert len(atlas.Atlas.open(store_path, version=generation)) == generation - 1


class CrashingStorage(LocalStorage):
    """A local store that dies (raises) at its n-th change of any kind."""

    def __init__(self, root, countdown: int):
        super().__init__(root)
        self.countdown = countdown

    def _tick(self):
        self.countdown -= 1
        if self.countdown < 0:
            raise OSError("crash")

    def put(self, key, data):
        self._tick()
        super().put(key, data)

    def delete(self, key):
        self._tick()
        super().delete(key)

    def remove_unused(self, key):
        self._tick()
        return super().remove_unused(key)

    def commit(self, key, data, expected):
        self._tick()
        return super().commit(key, data, expected)


def test_a_crash_at_any_point_of_expire_leaves_every_retained_version_intact(tmp_path):
    source = tmp_path / "source"
    store = atlas.Atlas.create(source)
    rng = random.Random(5)
    for step in range(1, 13):
        random_commit(store, rng, step)
    store.tag("kept", 4)
    expected = model_of(source)
    latest = store.version
    retained = {4, latest, latest - 1}  # keep_last=2, older_than=0, and the tag
    crash_points = 0
    while True:
        path = tmp_path / f"crash{crash_points}"
        shutil.copytree(source, path)
        handle = atlas.Atlas.open(CrashingStorage(path, crash_points))
        try:
            handle.expire(older_than=0, keep_last=2)
            finished = True
        except OSError:
            finished = False
        for generation in retained:
            assert snapshot(atlas.Atlas.open(path, version=generation)) == \
                expected[generation], (crash_points, generation)
        assert atlas.Atlas.open(path).verify().ok
        # the next expire finishes the job (its own commit is then among the last two)
        atlas.Atlas.open(path).expire(older_than=0, keep_last=2)
        again = atlas.Atlas.open(path)
        assert 4 in {v.generation for v in again.history()} and again.verify().ok
        assert snapshot(again) == expected[latest]
        if finished:
            break
        crash_points += 1
    assert crash_points > 3  # the pass has several steps, each crashed once


class _VanishingRecords(LocalStorage):
    """Lists version records that are gone by the time they are read: writers that lost the
    race to commit delete theirs between another process's listing and its reads, and an
    expiry deletes kept ones (``vanished`` may name records that exist)."""

    def __init__(self, path, vanished: set[str]):
        super().__init__(path)
        self.vanished = vanished

    def list(self, prefix=""):
        listed = super().list(prefix)
        there = {key for key, _size, _mtime in listed}
        return listed + [(key, 1, time.time()) for key in sorted(self.vanished - there)
                         if key.startswith(prefix)]

    def get(self, key):
        if key in self.vanished:
            raise FileNotFoundError(key)
        return super().get(key)


def test_the_chain_of_versions_walks_past_records_deleted_since_the_listing(tmp_path):
    from atlas.core import _versions
    from atlas.format import keys as key_grammar

    store = atlas.Atlas.create(tmp_path / "s")
    for i in range(4):
        store.create_dataset(f"d{i}")
        store.flush()
    latest = store._root
    # losers' records at two generations, one of them the generation below the latest
    vanished = {key_grammar.version_key(g, "f" * 32) for g in (latest.generation - 1,
                                                                latest.generation)}
    storage = _VanishingRecords(tmp_path / "s", vanished)
    walked = [root.generation for root in _versions.chain(storage, latest)]
    assert walked == list(range(latest.generation, -1, -1))
    rebasing = atlas.Atlas.open(storage)
    rebasing.create_dataset("mine")
    other = atlas.Atlas.open(tmp_path / "s")
    other.create_dataset("theirs")
    other.flush()
    rebasing.flush()  # re-applied on top of the other's commit, through the same chain
    assert {"mine", "theirs"} <= set(atlas.Atlas.open(tmp_path / "s").list_datasets())


def test_expiry_passes_records_deleted_since_the_listing(tmp_path):
    """An expiry beside writers: a record listed one generation above a generation of two
    records is gone when it is read (its writer lost the race and deleted it). compact() and
    expire() raised VersionExpiredError there (seen once by a helper's 5 writers and a
    compacting process); the listed record names nothing, the stray below it goes."""
    from atlas.format import keys as key_grammar

    store = atlas.Atlas.create(tmp_path / "s")
    for i in range(4):
        store.create_dataset(f"d{i}")
        store.flush()
    g = store._root.generation - 1
    stray = tmp_path / "s" / key_grammar.version_key(g, "e" * 32)
    real = atlas.Atlas.open(tmp_path / "s", version=g)._root.commit
    stray.write_bytes((tmp_path / "s" / key_grammar.version_key(g, real)).read_bytes())
    storage = _VanishingRecords(tmp_path / "s", {key_grammar.version_key(g + 1, "f" * 32)})
    result = atlas.Atlas.open(storage).expire(older_than=0, keep_last=10)
    assert not stray.exists()  # no record above names it: a stray, removed
    assert result["versions_removed"] == 2  # and the listed loser's, at the latest generation
    for version in range(g + 2):  # every real version still opens
        assert atlas.Atlas.open(tmp_path / "s", version=version).list_datasets() == \
            [f"d{i}" for i in range(version)]


def test_records_leave_out_the_retired_list_and_old_versions_open_without_it(tmp_path,
                                                                             monkeypatch):
    """The retired list grows with every version kept; a version record carries none of it
    (but a delta part its own commit merged away), and opening an earlier version reads only
    the newest root's head, never its lists: a damaged retired list of the newest root does
    not stop it."""
    from atlas.core import _versions
    from atlas.format import root as root_format

    store = atlas.Atlas.create(tmp_path / "s")
    states = {}
    for step in range(3 * FANOUT):  # enough one-dataset flushes for merges to retire files
        view = store.create_dataset(f"d{step}")
        view.define_array("x", "int64", ["n"], [3])
        view.write_array("x", [0], np.full(3, step, np.int64))
        store.flush(f"step {step}")
        states[store.version] = snapshot(store)
    latest = root_format.decode((tmp_path / "s" / "manifest.atlas").read_bytes(), "root")
    assert len(latest.retired) > FANOUT
    records = sorted((tmp_path / "s" / "versions").iterdir())
    assert len(records) == len(states) + 1  # and the empty store's
    for path in records:
        record = root_format.decode(path.read_bytes(), str(path))
        assert {key for key, _t, _g in record.retired} <= {record.delta}
    whole = root_format._retired_list

    def only_short_lists(raw, where):  # a record's (at most its delta), not the root's
        assert len(raw) <= 1, "opening an earlier version decoded the newest root's lists"
        return whole(raw, where)

    monkeypatch.setattr(root_format, "_retired_list", only_short_lists)
    for generation, expected in states.items():
        if generation != store.version:
            assert snapshot(atlas.Atlas.open(tmp_path / "s", version=generation)) == expected
    assert _versions.record_of(latest).retired == [
        e for e in latest.retired if e[0] == latest.delta]


def test_several_tags_name_their_versions_and_a_case_twin_is_refused(tmp_path):
    """Each tag() after the first used to raise AlreadyExistsError (the check for a name
    differing only in case overwrote the new tag's key with the last one listed)."""
    store = atlas.Atlas.create(tmp_path / "s")
    tagged = {}
    for i in range(3):
        store.write_array_across_stacked("v", ["a"], np.full((1, 3), i, np.float64))
        store.flush()
        store.tag(f"t{i}")
        tagged[f"t{i}"] = i
    assert set(store.tags()) == set(tagged)
    for name, value in tagged.items():
        old = atlas.Atlas.open(tmp_path / "s", version=name)
        assert old.read_array_across_stacked("v").tolist() == [[value] * 3]
    with pytest.raises(atlas.AlreadyExistsError, match="only in case"):
        store.tag("T1")
    with pytest.raises(atlas.AlreadyExistsError, match="already exists"):
        store.tag("t2")


def test_a_half_written_tag_is_no_tag_and_a_damaged_one_can_be_deleted(tmp_path):
    """An interrupted tag write leaves tags/<name>.<32 hex>.tmp: not a tag (it broke tags(),
    history() and expire()); a tag may not take such a name (the orphan sweep would take it);
    a damaged tag, which tags() reports, goes with delete_tag."""
    store = atlas.Atlas.create(tmp_path / "s")
    for i in range(3):
        store.create_dataset(f"d{i}")
        store.flush()
    store.tag("good", 2)
    half = tmp_path / "s" / "tags" / f"good.{'ab' * 16}.tmp"
    half.write_bytes(b'{"generation": 1, "com')
    assert store.tags() == {"good": 2} and store.history()[0].tags == ()
    assert half.relative_to(tmp_path / "s").as_posix() in store.verify().orphans
    with pytest.raises(ValueError, match="interrupted write"):
        store.tag(f"release.{'0' * 32}.tmp")
    store.expire(older_than=0)
    assert [v.generation for v in store.history()] == [3, 2]

    (tmp_path / "s" / "tags" / "good").write_bytes(b"{not json")
    with pytest.raises(atlas.CorruptionError, match="not a tag"):
        store.tags()
    store.delete_tag("good")
    assert store.tags() == {} and store.verify().ok

def test_a_version_opens_at_the_time_history_lists_for_it(store_path):
    """history() lists each commit time to the microsecond, which rounds a stored time down
    about half the time; opening at the listed time gave the version before (7 of 21 here)."""
    store = atlas.Atlas.create(store_path)
    for i in range(20):
        store.create_dataset(f"d{i}")
        store.flush()
    listed = store.history()
    assert [atlas.Atlas.open(store_path, version=v.time).version for v in listed] == \
        [v.generation for v in listed]


def test_a_time_whose_latest_version_expired_is_refused_not_given_an_older_one(store_path):
    store = atlas.Atlas.create(store_path)
    for i in range(3):
        store.create_dataset(f"d{i}")
        store.flush()
        time.sleep(0.02)
    store.tag("keep", 1)
    while_two = {v.generation: v.time for v in store.history()}[2] + dt.timedelta(
        milliseconds=10)  # version 2 (d0, d1) was the latest then
    store.expire(older_than=0, keep_last=1)  # 2 goes; 1 (tagged) and 3 stay
    with pytest.raises(atlas.VersionExpiredError, match="version 1, or one committed after "
                       r"it that expired \(2\)"):
        atlas.Atlas.open(store_path, version=while_two)
    assert atlas.Atlas.open(store_path, version=1).list_datasets() == ["d0"]


def test_times_far_from_any_commit_give_no_version_or_the_latest(store_path):
    store = atlas.Atlas.create(store_path)
    store.create_dataset("d")
    store.flush()
    for when in (dt.datetime(1, 1, 1), np.datetime64("-2000-01-01"),
                 dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)):
        with pytest.raises(atlas.VersionNotFoundError, match="first commit is later"):
            atlas.Atlas.open(store_path, version=when)
    assert atlas.Atlas.open(store_path, version=dt.datetime(9999, 12, 31)).version == 1
    # datetime64 of any unit, however far: no wrap-around in int64 to a time near the commits
    wraps_to_now = np.datetime64(3206406979521 * 365, "D")  # ~2**64 us past a recent day
    for when in (wraps_to_now, np.datetime64(2**62, "D"), np.datetime64(2**62, "Y"),
                 np.datetime64(10**15, "M"), np.datetime64(2**62, "s")):
        assert atlas.Atlas.open(store_path, version=when).version == 1
    for when in (np.datetime64(-(2**62), "D"), np.datetime64(-(2**62), "Y")):
        with pytest.raises(atlas.VersionNotFoundError, match="first commit is later"):
            atlas.Atlas.open(store_path, version=when)
    from atlas.core._versions import as_timestamp
    for text in ("2026-01-01", "2026-01", "2026", "2026-01-01T12:34:56.789"):
        exact = dt.datetime.fromisoformat(text if len(text) > 7 else text + "-01-01"[
            len(text) - 4:]).replace(tzinfo=dt.timezone.utc).timestamp()
        assert as_timestamp(np.datetime64(text)) == exact


def test_history_leaves_out_versions_expired_while_it_reads(tmp_path):
    from atlas.core import _versions
    from atlas.format import keys as key_grammar

    store = atlas.Atlas.create(tmp_path / "s")
    for i in range(4):
        store.create_dataset(f"d{i}")
        store.flush()
    gone = {key_grammar.version_key(g, atlas.Atlas.open(tmp_path / "s", version=g)._root.commit)
            for g in (1, 3)}
    storage = _VanishingRecords(tmp_path / "s", gone)
    assert [v.generation for v in atlas.Atlas.open(storage).history()] == [4, 2, 0]
    with pytest.raises(atlas.VersionExpiredError):  # what must see every version still raises
        list(_versions.chain(storage, store._root))
