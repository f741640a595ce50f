"""Nothing outside the store is ever opened, created or deleted (items 1 and 2 of issue 17).

Keys: every backend checks every key against the key grammar before any read, write, delete or
listing, and a root (commit record) that names a key other than the store's own files (forged
with a valid checksum) is refused as corruption, in format version 2 and in version-1
manifests. Links: a local store walks its folders without following links and opens only
regular files, so a symlinked ``segments`` or ``catalog`` folder, segment or part, a FIFO or a
device inside the store is reported as damage, never followed, created through or deleted
through. Before the fix a forged ``retired`` entry made compact() delete ``../victim.txt``, a
symlinked segment folder received new segments and lost files to compaction, and a FIFO
blocked reads and verify() forever."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections import Counter
from pathlib import Path

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
    for key in ("manifest.atlas", ".atlas.lock", "segments/00000012-" + "a" * 32 + ".seg",
                "catalog/000000000012-" + "b" * 32 + ".cat", "segments/temperature/00000012-"
                + "a" * 32 + ".seg", "a" * 255, "k"):
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


V1_STORE = Path(__file__).parent.parent / "data" / "v1_store"
LISTS = ("parts", "segments", "retired")


def _bad_keys(base: Path) -> list[str]:
    """Keys a root must never name: outside the store, absolute, the root itself, the lock, a
    folder, a file of the other kind, a version-1 segment (only ``retired`` may name those)."""
    other = base / "other_store"
    seg = _forge.refs(other, "a")[0][0]
    part = _forge.refs(other)[0][0]
    return ["../victim.txt", "segments/../../victim.txt", "catalog/../../victim.txt",
            str(base / "victim.txt"), "manifest.atlas", ".atlas.lock", "segments", "catalog/",
            f"../other_store/{seg}", f"../other_store/{part}", str(other / seg),
            "segments/victim.seg", "catalog/00000001-" + "0" * 31 + ".cat", part, seg,
            "segments/a/00000001-" + "e" * 32 + ".seg", "x" * 300, "seg\x00.seg"]


def _name(doc: dict, where: str, key: str) -> None:
    """Make the root ``doc`` name ``key`` in its list ``where``: as its first part, as the first
    segment of ``a``, or retired long ago (a compaction deletes it at once)."""
    if where == "retired":
        doc["retired"].append([key, 0.0])
    elif where == "parts":
        doc["parts"][0][0] = key
    else:
        doc["segments"]["a"][0][0] = key


def _outside(base: Path) -> dict:
    return {k: v for k, v in _tree(base).items() if not k.startswith("store" + os.sep)}


def _check_forged(base: Path, root: Path, before: atlas.Atlas, what: str,
                  refused_at_open: bool, outside: dict) -> None:
    """A forged root: refused as corruption (at open, or at the first read), reported by an
    older handle's verify(), and nothing outside the store changes through repair or compact."""
    try:
        store = atlas.Atlas.open(root)
    except (atlas.CorruptionError, atlas.FormatError) as err:
        assert refused_at_open, f"{what}: {err}"
        assert "manifest.atlas" in str(err) and "not a key this format uses" in str(err), \
            f"{what}: {err}"
        store = None
    else:
        assert not refused_at_open, f"{what}: opened"
        with pytest.raises(atlas.CorruptionError):
            store.open_dataset("d1").read_array("a")
            store.list_datasets()
            raise AssertionError(f"{what}: read as sound")
        assert not store.verify().ok, what
    report = before.verify()
    assert not report.ok, what
    if refused_at_open:
        assert any("manifest.atlas" in p for p in report.problems), (what, report.problems)
    for handle in (before, store):
        if handle is None:
            continue
        for call in (lambda: handle.verify(repair=True), lambda: handle.compact(grace=0)):
            try:
                call()
            except (atlas.CorruptionError, atlas.FormatError, atlas.ConflictError):
                pass  # refused, or the forged root is newer than the handle's
        assert _outside(base) == outside, f"{what}: files outside the store changed"


@pytest.mark.parametrize("where", LISTS)
def test_forged_roots_naming_keys_outside_the_store_are_refused_and_touch_nothing(
        tmp_path, where):
    """Version 2: every list of the root (parts, segments, retired), every key that is not
    one of the store's own files; before the key grammar, compact() deleted ../victim.txt."""
    _store(tmp_path / "other_store", datasets=("o",), flushes=1)
    (tmp_path / "victim.txt").write_bytes(b"victim")
    template = tmp_path / "template"
    _store(template)
    outside = _outside(tmp_path)
    other = tmp_path / "other_store"
    # keys of the grammar, valid in that list (the other store's files, a version-1 segment,
    # which upgrades retire): the next test
    valid = {"parts": [_forge.refs(other)[0][0]], "segments": [_forge.refs(other, "a")[0][0]]}
    valid["retired"] = [*valid["parts"], *valid["segments"], "segments/a/00000001-" + "e" * 32
                        + ".seg"]
    for key in _bad_keys(tmp_path):
        if key in valid[where]:
            continue
        root = tmp_path / "store"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(template, root)
        before = atlas.Atlas.open(root)  # a handle that read the sound root
        _forge.forge_root(root, lambda doc: _name(doc, where, key))
        _check_forged(tmp_path, root, before, f"{where}: {key!r}", True, outside)
        SEEN[f"forged root refused ({where})"] += 1


@pytest.mark.parametrize("where", ["parts", "segments"])
def test_a_root_naming_another_stores_files_reads_as_corruption_and_touches_nothing(
        tmp_path, where):
    """Keys of the grammar that name the other store's files (not here): reads raise
    CorruptionError (the file is gone), verify() reports it, the other store is untouched."""
    _store(tmp_path / "other_store", datasets=("o",), flushes=1)
    root = tmp_path / "store"
    _store(root)
    outside = _outside(tmp_path)
    before = atlas.Atlas.open(root)
    key = (_forge.refs(tmp_path / "other_store") if where == "parts" else
           _forge.refs(tmp_path / "other_store", "a"))[0][0]
    _forge.forge_root(root, lambda doc: _name(doc, where, key))
    _check_forged(tmp_path, root, before, f"{where}: the other store's {key}", False, outside)
    SEEN["root naming another store's files"] += 1


def _v1_forgeries(base: Path) -> list:
    other = base / "other_store"
    seg = _forge.refs(other, "a")[0][0]
    up = "../other_store/" + seg
    out = []
    for key in ("../victim.txt", "segments/../../victim.txt", str(base / "victim.txt"),
                "manifest.atlas", up, str(other / seg), "segments/temp/../../victim.txt",
                "victim.seg", seg):  # seg: a version-2 key, not one of version 1
        out.append((f"retired {key!r}", lambda d, k=key: d["retired"].append([k, 0.0])))
        out.append((f"segment {key!r}", lambda d, k=key: d["segments"]["temp"][0].__setitem__(
            0, k)))
    return out


def test_forged_version_1_manifests_naming_keys_outside_the_store_are_refused(tmp_path):
    """Version-1 stores still open (read only): their manifests get the same key checks."""
    _store(tmp_path / "other_store", datasets=("o",), flushes=1)
    (tmp_path / "victim.txt").write_bytes(b"victim")
    outside = _outside(tmp_path)
    for what, forge in _v1_forgeries(tmp_path):
        root = tmp_path / "store"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(V1_STORE, root)
        before = atlas.Atlas.open(root)
        assert before.format_version == 1
        _forge.forge_v1(root, forge)
        _check_forged(tmp_path, root, before, f"version 1, {what}", True, outside)
        with pytest.raises(atlas.FormatError, match="atlas upgrade"):
            before.compact(grace=0)  # version 1 is read only, forged or not
        SEEN["forged version-1 manifest refused"] += 1


# -- links and special files ----------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["segments", "catalog"])
def test_a_symlinked_store_folder_receives_nothing(tmp_path, folder):
    """A store whose ``segments`` (or ``catalog``) folder is a link: the write or flush that
    would create a file through it raises, and nothing lands behind the link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    store = atlas.Atlas.create(root)
    store.create_dataset("d0").define_array("b", "int32", ["x"], [4], [2])
    (root / folder).symlink_to(outside)  # neither folder exists before the first flush
    with pytest.raises(atlas.CorruptionError, match="symbolic link"):
        store.open_dataset("d0").write_array("b", [0], np.arange(4, dtype=np.int32))
        store.flush()
    assert list(outside.iterdir()) == []
    report = atlas.Atlas.open(root).verify()
    assert any(folder in p and "symbolic link" in p for p in report.problems)
    SEEN[f"symlinked {folder} folder, write"] += 1


@pytest.mark.parametrize("folder", ["segments", "catalog"])
def test_a_symlinked_store_folder_is_reported_and_its_files_are_never_deleted(tmp_path, folder):
    root = tmp_path / "store"
    _store(root, flushes=3)
    # the folder moved elsewhere and linked back: every file is still "there" through the link
    shutil.move(str(root / folder), str(tmp_path / "elsewhere"))
    (root / folder).symlink_to(tmp_path / "elsewhere")
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
    SEEN[f"symlinked {folder} folder, read/compact"] += 1


def _a_file(root, kind: str) -> str:
    """The key of the store's first segment of ``a`` or first catalog part."""
    return (_forge.refs(root, "a") if kind == "segment" else _forge.refs(root))[0][0]


@pytest.mark.parametrize("kind", ["segment", "part"])
def test_a_file_replaced_by_a_link_to_a_copy_is_reported_not_read(tmp_path, kind):
    root = tmp_path / "store"
    _store(root)
    key = _a_file(root, kind)
    path = root / key
    shutil.copy(path, tmp_path / "copy")
    path.unlink()
    path.symlink_to(tmp_path / "copy")
    store = atlas.Atlas.open(root)
    with pytest.raises(atlas.CorruptionError, match="symbolic link"):
        store.open_dataset("d0").read_array("a")
    assert any(key in p for p in store.verify().problems)
    with pytest.raises(atlas.CorruptionError):
        store.compact(grace=0)
    assert (tmp_path / "copy").exists()
    SEEN[f"symlinked {kind}"] += 1


def _reads_of_a_fifo(root: str, key: str) -> None:
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
            raise AssertionError("a read of a FIFO returned data")
    assert any(key in p for p in store.verify().problems)
    store.verify(repair=True)


@pytest.mark.parametrize("kind", ["segment", "part"])
@pytest.mark.parametrize("how", ["fifo", "link to a fifo"])
def test_a_fifo_in_place_of_a_file_never_blocks_reads_or_verify(tmp_path, how, kind):
    root = tmp_path / "store"
    _store(root)
    key = _a_file(root, kind)
    (root / key).unlink()
    if how == "fifo":
        os.mkfifo(root / key)
    else:
        os.mkfifo(tmp_path / "fifo")
        (root / key).symlink_to(tmp_path / "fifo")
    proc = context().Process(target=_reads_of_a_fifo, args=(str(root), key))
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"reads of a store with a {how} as a {kind} still blocked after 60 s")
    assert proc.exitcode == 0
    SEEN[f"{how} as a {kind}, no hang"] += 1


def test_unreferenced_links_and_special_files_are_reported_and_left_alone(tmp_path):
    root = tmp_path / "store"
    store = _store(root)
    (tmp_path / "target.seg").write_bytes(b"someone else's")
    (root / "segments" / f"00000001-{'0' * 32}.seg").symlink_to(tmp_path / "target.seg")
    os.mkfifo(root / "catalog" / f"00000001-{'1' * 32}.cat")
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
