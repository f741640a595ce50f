"""Nothing outside the store is ever opened, created or deleted (items 1 and 2 of issue 17).

Keys: every backend checks every key against the key grammar before any read, write, delete or
listing, and a commit record that names a key outside it (forged with a valid checksum) is
refused as corruption. Links: a local store walks its folders without following links and
opens only regular files, so a symlinked folder or segment, a FIFO or a device inside the
store is reported as damage, never followed, created through or deleted through. Before the
fix a forged ``retired`` entry made compact() delete ``../victim.txt``, a symlinked
``segments/<array>`` folder received new segments and lost files to compaction, and a FIFO
blocked reads and verify() forever."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas
from atlas.storage import LocalStorage, check_key
from atlas.storage._obstore import ObjectStorage

from . import _forge
from ._harness import context, record

SEEN: Counter = Counter()

BAD_KEYS = ["", "/etc/passwd", "../victim.txt", "segments/../../victim.txt", "a//b", "./a",
            "a/.", "a/", "a\\..\\b", "a\x00b", "a\nb", "a\x7fb", "x" * 256, "a/" * 600 + "b",
            "seg\ud800", 7, None, b"bytes"]


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if SEEN:
        record("paths", checks=sum(SEEN.values()), outcomes=dict(sorted(SEEN.items())))


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: a blocked open() of a FIFO is interrupted by SIGALRM."""
    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _store(root, datasets=("d0", "d1"), flushes=2) -> atlas.Atlas:
    """Datasets with an array ``a`` written over ``flushes`` flushes (that many segments)."""
    store = atlas.Atlas.create(root)
    for i, name in enumerate(datasets):
        ds = store.create_dataset(name)
        ds.define_array("a", "float64", ["x"], [20], [5], float("nan"))
    for f in range(flushes):
        for i, name in enumerate(datasets):
            store.open_dataset(name).write_array("a", [5 * f], np.full(5, 10.0 * i + f))
        store.flush()
    return store


def _tree(path) -> dict:
    """Every file under ``path`` with its bytes (links as their target)."""
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, path)] = (os.readlink(full) if os.path.islink(full)
                                                else open(full, "rb").read())
    return out


# -- the key grammar ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_the_key_grammar_refuses_keys_that_could_leave_the_store(key):
    with pytest.raises(atlas.InvalidKeyError):
        check_key(key)
    with pytest.raises(atlas.CorruptionError, match="manifest.atlas"):
        check_key(key, "store/manifest.atlas")  # read from stored data: corruption
    SEEN["grammar"] += 1


def test_keys_the_format_writes_are_in_the_grammar():
    for key in ("manifest.atlas", ".atlas.lock", "segments/temperature/00000012-" + "a" * 32
                + ".seg", "segments/" + "%C3%A9" * 42 + "/1.seg", "a" * 255, "k"):
        assert check_key(key) == key


def _backends(tmp_path):
    from obstore.store import LocalStore, MemoryStore

    (tmp_path / "obstore").mkdir()
    return [LocalStorage(tmp_path / "local"), ObjectStorage(MemoryStore()),
            ObjectStorage(LocalStore(str(tmp_path / "obstore")))]


@pytest.mark.parametrize("key", [k for k in BAD_KEYS if k != ""], ids=repr)
def test_every_backend_refuses_a_bad_key_before_touching_anything(tmp_path, key):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not the store's")
    spill = tmp_path / "spill.seg"
    spill.write_bytes(b"x")
    for backend in _backends(tmp_path):
        backend.put("segments/a/ok.seg", b"fine")
        for call in (lambda: backend.get(key), lambda: backend.get_range(key, 0, 1),
                     lambda: backend.get_ranges(key, [0], [1]), lambda: backend.put(key, b"!"),
                     lambda: backend.delete(key), lambda: backend.list(key),
                     lambda: backend.spill_path(key), lambda: backend.publish(key, str(spill)),
                     lambda: backend.read_manifest(key), lambda: backend.commit(key, b"!", None),
                     lambda: backend.remove_unused(key)):
            with pytest.raises(ValueError, match="storage key"):
                call()
            SEEN["backend refused"] += 1
        assert backend.get("segments/a/ok.seg") == b"fine"
    assert victim.read_bytes() == b"not the store's"
    assert sorted(os.listdir(tmp_path)) == ["local", "obstore", "spill.seg", "victim.txt"]


key_parts = st.one_of(st.sampled_from(["..", ".", "", "segments", "a", "é", "\\", "..\\x",
                                         "\x00", "\n", "~", "x" * 255, "x" * 256, "\ud800"]),
                      st.text(max_size=4))
keys = st.lists(key_parts, min_size=1, max_size=5).map("/".join) | st.text(max_size=12)


def _key_lands_inside_or_is_refused(tmp_path_factory, key: str) -> None:
    import uuid

    base = tmp_path_factory.getbasetemp() / "keys" / uuid.uuid4().hex
    root = base / "deep" / "root"
    root.mkdir(parents=True)
    storage = LocalStorage(root)
    try:
        check_key(key)
    except atlas.InvalidKeyError:
        for call in (lambda: storage.put(key, b"x"), lambda: storage.delete(key),
                     lambda: storage.get(key), lambda: storage.spill_path(key)):
            with pytest.raises(atlas.InvalidKeyError):
                call()
        SEEN["random key refused"] += 1
    else:
        storage.put(key, b"x")
        path = os.path.realpath(storage._path(key))
        assert path.startswith(os.path.realpath(root) + os.sep) and storage.get(key) == b"x"
        storage.delete(key)
        SEEN["random key inside"] += 1
    outside = [p for p in base.rglob("*") if root not in p.parents and p != root
               and p not in root.parents]
    assert outside == [], f"{key!r} wrote {outside}"
    shutil.rmtree(base)


@settings(max_examples=max(60, settings.default.max_examples))
@given(key=keys)
def test_random_keys_land_inside_the_store_or_are_refused(tmp_path_factory, key):
    _key_lands_inside_or_is_refused(tmp_path_factory, key)


@pytest.mark.slow
@settings(max_examples=5 * settings.default.max_examples)
@given(key=keys)
def test_many_random_keys_land_inside_the_store_or_are_refused(tmp_path_factory, key):
    _key_lands_inside_or_is_refused(tmp_path_factory, key)


def _forgeries(tmp_path):
    """(description, forge(root)) pairs: manifests with valid checksums naming keys outside
    the store, an absolute path, or the store's own manifest as a retired segment."""
    victim = tmp_path / "victim.txt"
    other = tmp_path / "other_store"
    seg = _forge.segment_refs(str(other), "a")[0]
    up = "../other_store/" + seg[0]
    return [
        ("retired ../victim.txt", lambda r: _forge.retire_key(r, "../victim.txt")),
        ("retired ../../victim.txt", lambda r: _forge.retire_key(
            r, "segments/../../victim.txt")),
        ("retired absolute", lambda r: _forge.retire_key(r, str(victim))),
        ("retired the manifest", lambda r: _forge.retire_key(r, "manifest.atlas")),
        ("retired the other store's segment", lambda r: _forge.retire_key(r, up)),
        ("segment in the other store", lambda r: _forge.name_key(r, "a", up, seg[1], seg[2])),
        ("segment absolute", lambda r: _forge.name_key(r, "a", str(other / seg[0]), seg[1],
                                                        seg[2])),
        ("segment not a segment key", lambda r: _forge.name_key(r, "a", "victim.seg")),
    ]


def test_forged_manifests_naming_keys_outside_the_store_are_refused_and_touch_nothing(
        tmp_path):
    _store(tmp_path / "other_store", datasets=("o",), flushes=1)
    (tmp_path / "victim.txt").write_bytes(b"victim")
    outside = {"victim.txt": b"victim", **{f"other_store/{k}": v for k, v in
                                           _tree(tmp_path / "other_store").items()}}
    for what, forge in _forgeries(tmp_path):
        root = tmp_path / "store"
        if root.exists():
            shutil.rmtree(root)
        before = _store(root)  # a handle that read the sound manifest
        forge(str(root))
        with pytest.raises(atlas.CorruptionError, match="manifest.atlas") as err:
            atlas.Atlas.open(root)
        assert "storage key" in str(err.value) or "not a segment key" in str(err.value), what
        report = before.verify()
        assert not report.ok and any("manifest.atlas" in p for p in report.problems), what
        before.verify(repair=True)
        with contextlib.suppress(atlas.ConflictError):
            before.compact(grace=0)  # the forged manifest is newer: no commit over it
        now = {"victim.txt": (tmp_path / "victim.txt").read_bytes(),
               **{f"other_store/{k}": v for k, v in _tree(tmp_path / "other_store").items()}}
        assert now == outside, f"{what}: files outside the store changed"
        SEEN["forged manifest refused"] += 1


# -- links and special files ----------------------------------------------------------------------


def test_a_symlinked_array_folder_receives_nothing(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = _store(tmp_path / "store")
    (tmp_path / "store" / "segments" / "b").symlink_to(outside)
    ds = store.open_dataset("d0")
    ds.define_array("b", "int32", ["x"], [4], [2])
    with pytest.raises(atlas.CorruptionError, match="symbolic link"):
        ds.write_array("b", [0], np.arange(4, dtype=np.int32))
    assert list(outside.iterdir()) == []
    report = atlas.Atlas.open(tmp_path / "store").verify()
    assert any("segments/b" in p and "symbolic link" in p for p in report.problems)
    SEEN["symlinked folder, write"] += 1


def test_a_symlinked_array_folder_is_reported_and_its_files_are_never_deleted(tmp_path):
    root = tmp_path / "store"
    _store(root, flushes=3)
    # the folder moved elsewhere and linked back: every file is still "there" through the link
    shutil.move(str(root / "segments" / "a"), str(tmp_path / "elsewhere"))
    (root / "segments" / "a").symlink_to(tmp_path / "elsewhere")
    outside = _tree(tmp_path / "elsewhere")
    store = atlas.Atlas.open(root)
    with pytest.raises(atlas.CorruptionError, match="symbolic link"):
        store.open_dataset("d0").read_array("a")
    report = store.verify()
    assert report.problems and all("symbolic link" in p for p in report.problems)
    store.verify(repair=True)
    with pytest.raises(atlas.CorruptionError):
        store.compact(grace=0)
    assert _tree(tmp_path / "elsewhere") == outside
    SEEN["symlinked folder, read/compact"] += 1


def test_a_segment_replaced_by_a_link_to_a_copy_is_reported_not_read(tmp_path):
    root = tmp_path / "store"
    _store(root)
    key = _forge.segment_refs(str(root), "a")[0][0]
    seg = root / key
    shutil.copy(seg, tmp_path / "copy.seg")
    seg.unlink()
    seg.symlink_to(tmp_path / "copy.seg")
    store = atlas.Atlas.open(root)
    with pytest.raises(atlas.CorruptionError, match="symbolic link"):
        store.open_dataset("d0").read_array("a")
    assert any(key in p for p in store.verify().problems)
    with pytest.raises(atlas.CorruptionError):
        store.compact(grace=0)
    assert (tmp_path / "copy.seg").exists()
    SEEN["symlinked segment"] += 1


def _reads_of_a_fifo_segment(root: str, key: str) -> None:
    """Run in a separate process (a blocked open() in a reader thread cannot be interrupted):
    every read and verify() must come back, with CorruptionError or a problem report."""
    store = atlas.Atlas.open(root)
    for call in (lambda: store.open_dataset("d0").read_array("a"),
                 lambda: store.read_array_across_stacked("a", ["d0", "d1"])):
        try:
            call()
        except atlas.CorruptionError as err:
            assert "FIFO" in str(err) or "symbolic link" in str(err), err
        else:
            raise AssertionError("a read of a FIFO segment returned data")
    assert any(key in p for p in store.verify().problems)
    store.verify(repair=True)


@pytest.mark.parametrize("how", ["fifo", "link to a fifo"])
def test_a_fifo_in_place_of_a_segment_never_blocks_reads_or_verify(tmp_path, how):
    root = tmp_path / "store"
    _store(root)
    key = _forge.segment_refs(str(root), "a")[0][0]
    (root / key).unlink()
    if how == "fifo":
        os.mkfifo(root / key)
    else:
        os.mkfifo(tmp_path / "fifo")
        (root / key).symlink_to(tmp_path / "fifo")
    proc = context().Process(target=_reads_of_a_fifo_segment, args=(str(root), key))
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"reads of a store with a {how} as a segment still blocked after 60 s")
    assert proc.exitcode == 0
    SEEN[f"{how}, no hang"] += 1


def test_unreferenced_links_and_special_files_are_reported_and_left_alone(tmp_path):
    root = tmp_path / "store"
    store = _store(root)
    (tmp_path / "target.seg").write_bytes(b"someone else's")
    (root / "segments" / "a" / f"00000001-{'0' * 32}.seg").symlink_to(tmp_path / "target.seg")
    os.mkfifo(root / "segments" / "a" / f"00000001-{'1' * 32}.seg")
    (root / "segments" / "x").symlink_to(tmp_path)
    with deadline(20):
        report = store.verify()
        assert len(report.problems) == 3, report.problems
        assert not report.orphans
        store.compact(grace=0)
        store.verify(repair=True)
    assert (tmp_path / "target.seg").read_bytes() == b"someone else's"
    assert os.path.islink(root / "segments" / "x")
    assert store.open_dataset("d1").read_array("a")[0] == 10.0
    SEEN["unreferenced links left alone"] += 1


def test_a_symlinked_lock_file_or_manifest_is_refused(tmp_path):
    root = tmp_path / "store"
    store = _store(root)
    (root / ".atlas.lock").unlink()
    (root / ".atlas.lock").symlink_to(tmp_path / "created-through-a-link")
    store.open_dataset("d0").set_attribute("k", 1)
    with pytest.raises(atlas.CorruptionError, match="symbolic link"):
        store.flush()
    assert not (tmp_path / "created-through-a-link").exists()
    other = tmp_path / "other"
    _store(other, datasets=("theirs",))
    (root / "manifest.atlas").unlink()
    (root / "manifest.atlas").symlink_to(other / "manifest.atlas")
    with pytest.raises(atlas.CorruptionError, match="symbolic link"):
        atlas.Atlas.open(root)
    SEEN["symlinked lock/manifest"] += 1
