"""Retired lists (format version 4): a root keeps its newest retired entries and names
immutable lists holding the older ones, so a commit and an open cost the same however many
versions the store keeps. Checked against a model of every version's values, the files on
disk, crafted lists and roots, and writers that race."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import atlas
from atlas.core import _maintain
from atlas.errors import CorruptionError
from atlas.format import retired as retired_format
from atlas.format import root as root_format

from _s3 import moto_s3  # noqa: F401  (fixture)

INLINE = 8


@pytest.fixture(autouse=True)
def few_inline(monkeypatch):
    monkeypatch.setattr(_maintain, "RETIRED_INLINE", INLINE)


def flush_one(store, model: dict, i: int) -> None:
    """Dataset ``d<i>`` (10 int32), one flush: a new segment and part, merges now and then."""
    model[f"d{i}"] = np.arange(10, dtype=np.int32) + 100 * i
    store.write_array_across_stacked("x", [f"d{i}"], model[f"d{i}"][None], dims=["i"])
    store.flush()


def history(path: Path, flushes: int) -> tuple[atlas.Atlas, dict[int, dict]]:
    """A store of ``flushes`` one-dataset flushes; {generation: the datasets it holds}."""
    store = atlas.Atlas.create(path, shuffle=False)
    model: dict = {}
    versions = {}
    for i in range(flushes):
        flush_one(store, model, i)
        versions[store.version] = dict(model)
    return store, versions


def check_version(path: Path, generation: int, expected: dict) -> None:
    old = atlas.Atlas.open(path, version=generation)
    assert old.list_datasets() == list(expected)
    got = old.read_array_across_stacked("x")
    assert np.array_equal(got, np.stack(list(expected.values())))


def files_on_disk(path: Path) -> set[str]:
    return {f"{folder}/{name}" for folder in ("catalog", "segments")
            for name in os.listdir(path / folder)}


def damage_first_list(path: Path, store: atlas.Atlas):
    """Flip a bit near the end of the store's first retired list; returns its reference."""
    victim = store._root.retired_lists[0]
    raw = bytearray((path / victim.key).read_bytes())
    raw[-3] ^= 0x10
    (path / victim.key).write_bytes(bytes(raw))
    return victim


def test_a_root_stays_small_however_many_versions_it_keeps(tmp_path):
    path = tmp_path / "s"
    store = atlas.Atlas.create(path, shuffle=False)
    model: dict = {}
    sizes, versions = [], {}
    for i in range(240):
        flush_one(store, model, i)
        versions[store.version] = dict(model)
        sizes.append((path / "manifest.atlas").stat().st_size)
    root = store._root
    entries = _maintain.all_retired(store, root)
    assert root.retired_lists and len(entries) > 10 * INLINE
    assert len(root.retired) <= INLINE + 16  # what one flush's merges retire at most
    assert store.format_version == 4 and store.usage()["retired"] == len(entries)
    # the root of 240 commits is about the root of 60: not a list of every replaced file
    assert sizes[-1] < 1.5 * sizes[59], (sizes[59], sizes[-1])
    for generation in (3, 60, 150, store.version):
        check_version(path, generation, versions[generation])
    fresh = atlas.Atlas.open(path)
    report = fresh.verify()
    assert report.ok and not report.orphans, (report.problems, report.orphans)
    # every file on disk is kept, every kept file is there
    assert files_on_disk(path) == _maintain.referenced_keys(fresh, fresh._root)
    # version records name no retired list: old versions open as format 2
    record = atlas.Atlas.open(path, version=150)
    assert record._root.retired_lists == [] and record.format_version == 2
    assert "retired_lists" not in json.dumps(record._root.to_json())


def test_expiry_frees_what_the_lists_hold_and_drops_them(tmp_path):
    path = tmp_path / "s"
    store, versions = history(path, 120)
    assert store._root.retired_lists
    result = store.expire(older_than=0, keep_last=1)
    assert result["files_removed"] > 10 * INLINE
    fresh = atlas.Atlas.open(path)
    # left: the last flush's own delta part, which the version kept (120) reads
    assert fresh._root.retired_lists == [] and len(fresh._root.retired) <= 1
    assert fresh.format_version == 2
    assert files_on_disk(path) == fresh._root.keys()  # nothing else is left
    check_version(path, fresh.version, versions[store.version - 1])
    assert fresh.verify().ok


def test_a_tagged_version_keeps_its_files_through_a_partial_rewrite(tmp_path):
    path = tmp_path / "s"
    store, versions = history(path, 100)
    tagged = 30
    store.tag("keep", tagged)
    lists_before = {r.key for r in store._root.retired_lists}
    store.expire(older_than=0, keep_last=1)
    fresh = atlas.Atlas.open(path)
    check_version(path, tagged, versions[tagged])  # its files survived the expiry
    kept = _maintain.all_retired(fresh, fresh._root)
    assert kept  # the tagged version's files are still listed ...
    assert {r.key for r in fresh._root.retired_lists} != lists_before  # ... in lists rewritten
    assert not any((path / key).exists() for key in lists_before
                   if key not in {r.key for r in fresh._root.retired_lists})
    assert files_on_disk(path) == _maintain.referenced_keys(fresh, fresh._root)
    fresh.delete_tag("keep")
    fresh.expire(older_than=0, keep_last=1)
    last = atlas.Atlas.open(path)
    assert len(last._root.retired) <= 1 and last._root.retired_lists == []
    assert files_on_disk(path) == last._root.keys()


def test_flushes_that_expire_rewrite_the_lists_and_keep_the_store_bounded(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(_maintain, "AUTO_EXPIRE_EVERY_SECONDS", 0.0)
    path = tmp_path / "s"
    store = atlas.Atlas.create(path, shuffle=False)
    store.set_retention(older_than=0, keep_last=3)
    model: dict = {}
    counts = []
    for i in range(150):
        flush_one(store, model, i)
        counts.append(len(files_on_disk(path)))
    fresh = atlas.Atlas.open(path)
    assert max(counts[100:]) < 60, counts[-5:]  # freed as the flushes go, lists included
    assert files_on_disk(path) == _maintain.referenced_keys(fresh, fresh._root)
    versions = [v.generation for v in fresh.history()]
    assert len(versions) <= 3 + _maintain.FANOUT + 1
    got = fresh.read_array_across_stacked("x", list(model))
    assert np.array_equal(got, np.stack(list(model.values())))
    assert fresh.verify().ok


def test_a_damaged_or_missing_list_is_reported_and_nothing_is_freed(tmp_path):
    path = tmp_path / "s"
    store, _versions = history(path, 80)
    victim = damage_first_list(path, store)
    before = files_on_disk(path)
    fresh = atlas.Atlas.open(path)
    report = fresh.verify(repair=True)
    assert any(victim.key in p for p in report.problems), report.problems
    assert report.removed == []
    with pytest.raises(CorruptionError, match=victim.key):
        fresh.expire(older_than=0, keep_last=1)
    usage = atlas.Atlas.open(path).usage()  # told, not raised
    assert any(victim.key in p for p in usage["problems"]) and usage["parts"] >= 1
    assert files_on_disk(path) == before
    (path / victim.key).unlink()
    report = atlas.Atlas.open(path).verify(repair=True)
    assert any("retired list is missing" in p for p in report.problems), report.problems
    assert any("gone" in p for p in atlas.Atlas.open(path).usage()["problems"])
    assert report.removed == [] and files_on_disk(path) == before - {victim.key}


def test_crafted_lists_and_roots_are_refused(tmp_path):
    store, _versions = history(tmp_path / "s", 40)
    root = store._root
    good = retired_format.encode([("segments/00000001-" + "a" * 32 + ".seg", 1.5, 2)])
    assert retired_format.decode(good, "x") == [("segments/00000001-" + "a" * 32 + ".seg",
                                                 1.5, 2)]
    for damaged, match in ((good[:10], "too short"), (b"ATLMAN01" + good[8:], "not a retired"),
                           (good[:-1] + bytes([good[-1] ^ 1]), "checksum"),
                           (retired_format.encode([("../x.seg", 1.5, 2)]), "not a key"),
                           (retired_format.encode([("catalog/00000001-" + "a" * 32 + ".cat",
                                                    1.0, -1)]), "retired entry")):
        with pytest.raises(CorruptionError, match=match):
            retired_format.decode(damaged, "x")
    doc = root.to_json()
    assert doc["version"] == 4 and doc["retired_lists"]

    def forged(doc: dict, version: int) -> bytes:
        import zstandard

        from atlas.codecs import checksum

        payload = zstandard.ZstdCompressor().compress(json.dumps(doc).encode())
        return root_format.HEADER.pack(root_format.MAGIC, version, checksum(payload),
                                       len(payload)) + payload

    # version 3 (or 2) naming retired lists: an atlas knowing only those would drop them
    for version in (2, 3):
        with pytest.raises(CorruptionError, match=f"version-{version}"):
            root_format.decode(forged(dict(doc, version=version), version), "crafted")
    with pytest.raises(CorruptionError, match="version-4"):
        root_format.decode(forged(dict(doc, retired_lists=[]), 4), "crafted")
    for key in ("../escape.ret", "catalog/00000001-" + "a" * 32 + ".cat",
                "segments/00000001-" + "a" * 32 + ".ret"):
        with pytest.raises(CorruptionError, match="not a key"):
            root_format.decode(forged(dict(doc, retired_lists=[[key, 10, 0]]), 4), "crafted")
    twice = doc["retired_lists"][0]
    with pytest.raises(CorruptionError, match="listed twice"):
        root_format.decode(forged(dict(doc, retired_lists=[twice, twice]), 4), "crafted")


def test_two_writers_racing_keep_every_retired_file(tmp_path):
    """Two handles flushing in turn, each first on a root the other replaced (that flush
    rebases, dropping its merges): no retired entry is lost, no file is left unlisted, every
    version reads back."""
    path = tmp_path / "s"
    first = atlas.Atlas.create(path, shuffle=False)
    second = atlas.Atlas.open(path)
    model: dict = {}
    versions = {}
    for i in range(90):  # three flushes in a row each: the first rebases, the others merge
        flush_one(first if i // 3 % 2 else second, model, i)
        latest = atlas.Atlas.open(path)
        versions[latest.version] = dict(model)
    fresh = atlas.Atlas.open(path)
    assert fresh._root.retired_lists
    report = fresh.verify()
    assert report.ok and not report.orphans, (report.problems, report.orphans)
    assert files_on_disk(path) == _maintain.referenced_keys(fresh, fresh._root)
    for generation in sorted(versions)[::15]:
        check_version(path, generation, versions[generation])


def test_a_handle_whose_list_another_replaced_still_flushes_and_expires(tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(_maintain, "AUTO_EXPIRE_EVERY_SECONDS", 0.0)
    path = tmp_path / "s"
    store, _versions = history(path, 40)
    stale = atlas.Atlas.open(path)
    stale_lists = {r.key for r in stale._root.retired_lists}
    model = {name: stale.open_dataset(name).read_array("x") for name in stale.list_datasets()}
    other = atlas.Atlas.open(path)
    other.set_retention(older_than=0, keep_last=2)
    i = 40
    while stale_lists & files_on_disk(path):  # until the other handle replaced them all
        flush_one(other, model, i)
        i += 1
        assert i < 400, "the lists were never replaced"
    flush_one(stale, model, i)  # its expiry cannot read its lists: it rebases without it
    result = stale.expire(older_than=0, keep_last=1)  # planned on the newest root
    assert result["files_removed"] >= 0
    fresh = atlas.Atlas.open(path)
    got = fresh.read_array_across_stacked("x", list(model))
    assert np.array_equal(got, np.stack(list(model.values())))
    report = fresh.verify()
    assert report.ok and not report.orphans, (report.problems, report.orphans)
    assert files_on_disk(path) == _maintain.referenced_keys(fresh, fresh._root)


def _forge_list(path: Path, store: atlas.Atlas, victim, entries: list) -> None:
    """Replace the retired list ``victim`` by one holding ``entries`` (a valid checksum), and
    the root by one recording its new size: what only deliberate tampering produces."""
    from dataclasses import replace

    data = retired_format.encode(entries)
    (path / victim.key).write_bytes(data)
    root = store._root
    lists = [replace(r, size=len(data)) if r.key == victim.key else r
             for r in root.retired_lists]
    (path / "manifest.atlas").write_bytes(replace(root, retired_lists=lists).encode())


def test_a_list_naming_a_live_file_never_gets_it_deleted(tmp_path):
    path = tmp_path / "s"
    store, versions = history(path, 60)
    victim = store._root.retired_lists[0]
    live = store._root.segments["x"][0].key
    entries = list(store._files.retired(victim))
    entries[0] = (live, entries[0][1], store.version + 1)
    _forge_list(path, store, victim, entries)
    fresh = atlas.Atlas.open(path)
    report = fresh.verify()
    assert any("which the root reads" in p and live in p for p in report.problems)
    fresh.expire(older_than=0, keep_last=1)
    assert (path / live).exists()
    check_version(path, store.version, versions[store.version])


def test_a_damaged_list_stops_expiry_but_not_flushes(tmp_path, monkeypatch):
    monkeypatch.setattr(_maintain, "AUTO_EXPIRE_EVERY_SECONDS", 0.0)
    path = tmp_path / "s"
    store, versions = history(path, 60)
    store.set_retention(older_than=0, keep_last=1)
    victim = damage_first_list(path, store)
    before = files_on_disk(path)
    writer = atlas.Atlas.open(path)
    model = dict(versions[max(versions)])
    for i in range(60, 70):  # each flush would expire: it cannot read the list, so it keeps all
        flush_one(writer, model, i)
    assert before <= files_on_disk(path)
    fresh = atlas.Atlas.open(path)
    assert np.array_equal(fresh.read_array_across_stacked("x", list(model)),
                          np.stack(list(model.values())))
    assert any(victim.key in p for p in fresh.verify().problems)
    fresh.compact()  # commits; the expiry after it waits for the list to be repaired
    assert before - {k for k in before if k.startswith("segments/")} <= files_on_disk(path)


def test_lists_hold_exactly_key_time_generation_entries():
    key = "segments/00000001-" + "a" * 32 + ".seg"
    for doc in ([[key, 1.5]], [[key, 1.5, 2, "extra"]], [{"key": key}]):
        raw = json.dumps(doc).encode()
        import zstandard

        from atlas.codecs import checksum

        payload = zstandard.ZstdCompressor().compress(raw)
        data = retired_format.HEADER.pack(retired_format.MAGIC, 1, checksum(payload),
                                          len(payload)) + payload
        with pytest.raises(CorruptionError, match="entries"):
            retired_format.decode(data, "x")


def test_verify_during_a_flush_that_replaces_a_list_reports_nothing(tmp_path):
    """verify() reads the newest root, then its lists: a flush may replace one and delete it
    in between. That is not a missing list."""
    path = tmp_path / "s"
    store, _versions = history(path, 40)
    seen = atlas.Atlas.open(path)._root
    model = {name: store.open_dataset(name).read_array("x") for name in store.list_datasets()}
    i = 40
    while {r.key for r in seen.retired_lists} & files_on_disk(path):
        flush_one(store, model, i)  # until every list the old root names was replaced
        i += 1
        assert i < 400, "the lists were never replaced"
    problems: list[str] = []
    fresh = atlas.Atlas.open(path)
    _maintain._verify_retired_lists(fresh._storage, _maintain.IndexCache(fresh._storage), seen,
                                    problems)
    assert problems == []
    damaged: list[str] = []  # while the newest root names a missing list, it is a problem
    gone = fresh._root.retired_lists[0]
    (path / gone.key).unlink()
    _maintain._verify_retired_lists(fresh._storage, _maintain.IndexCache(fresh._storage),
                                    fresh._root, damaged)
    assert any("retired list is missing" in p for p in damaged)


def test_retired_lists_on_an_s3_server(moto_s3):
    """The same on the moto S3 server: lists written, merged, read back by a new handle and
    freed by an expiry; every version kept reads back."""
    store = atlas.Atlas.create(moto_s3.store(prefix := moto_s3.new_prefix()), shuffle=False)
    model: dict = {}
    versions = {}
    for i in range(60):
        flush_one(store, model, i)
        versions[store.version] = dict(model)
    assert store._root.retired_lists
    fresh = atlas.Atlas.open(moto_s3.store(prefix))
    assert fresh.format_version == 4
    entries = _maintain.all_retired(fresh, fresh._root)
    assert len(entries) > 2 * INLINE
    old = atlas.Atlas.open(moto_s3.store(prefix), version=20)
    assert np.array_equal(old.read_array_across_stacked("x"),
                          np.stack(list(versions[20].values())))
    report = fresh.verify()
    assert report.ok and not report.orphans, (report.problems, report.orphans)
    fresh.expire(older_than=0, keep_last=1)
    last = atlas.Atlas.open(moto_s3.store(prefix))
    assert last._root.retired_lists == []
    keys = {key for key, _size, _mtime in last._storage.list("")
            if key.startswith(("catalog/", "segments/"))}
    assert keys == last._root.keys()


def test_upgrade_leaves_a_version_4_store_alone_and_says_so(tmp_path, capsys):
    from atlas.cli import main
    from atlas.core._upgrade import upgrade

    path = tmp_path / "s"
    store, _versions = history(path, 40)
    before = (path / "manifest.atlas").read_bytes()
    assert upgrade(str(path)) == {"upgraded": False, "format": 4,
                                  "generation": store.version}
    assert main(["upgrade", str(path)]) == 0
    assert "format version 4 already" in capsys.readouterr().out
    assert (path / "manifest.atlas").read_bytes() == before
