"""Linked blocks (issue 19): a merge in a store that keeps versions lists full blocks of the
segments it merges instead of copying them, so every version's data is stored once. Checked
against a model of each commit's values, against the bytes the commits wrote, and against
crafted files and roots."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas
from atlas.core._maintain import FANOUT
from atlas.errors import CorruptionError
from atlas.format import root as root_format
from atlas.format.segment import LINKED_LIVE_SHARE, SegmentWriter, index_problem

BLOCK = 4096  # blocks of 512 float64: a flush of a few datasets fills some
DEPTH = 16  # 128 bytes per dataset: packed (a chunk of 256 gets a block of its own)


def names(n: int) -> list[str]:
    return [f"p{i:04d}" for i in range(n)]


def rewrite(store: atlas.Atlas, values: np.ndarray, rows: np.ndarray, rng) -> None:
    new = rng.normal(size=(len(rows), DEPTH))
    store.write_array_across_stacked("v", [names(len(values))[i] for i in rows], new,
                                     dims=["depth"])
    values[rows] = new


def built(path: Path, n: int, rng, **options) -> tuple[atlas.Atlas, np.ndarray]:
    # unshuffled unless asked: a store that shuffles is format 5 whatever it links
    store = atlas.Atlas.create(path, block_size=BLOCK, **{"shuffle": False, **options})
    values = rng.normal(size=(n, DEPTH))
    store.write_array_across_stacked("v", names(n), values, dims=["depth"])
    store.flush("build")
    return store, values


def rewrite_and_flush(store: atlas.Atlas, values: np.ndarray, flushes: int, rng) -> None:
    """``flushes`` flushes, each rewriting 24 random datasets of 200 (a block or so)."""
    for _ in range(flushes):
        rewrite(store, values, np.sort(rng.choice(200, 24, replace=False)), rng)
        store.flush()


def check_versions(path: Path, model: dict[int, np.ndarray]) -> None:
    for generation, expected in model.items():
        old = atlas.Atlas.open(path, version=generation)
        assert np.array_equal(old.read_array_across_stacked("v"), expected), generation


def test_merges_link_full_blocks_and_store_each_version_once(tmp_path, rng):
    path = tmp_path / "s"
    store, values = built(path, 200, rng)
    model = {store.version: values.copy()}
    raw = values.nbytes
    for _ in range(4 * FANOUT):
        rewrite(store, values, np.sort(rng.choice(200, 24, replace=False)), rng)
        raw += 24 * DEPTH * 8
        store.flush()
        model[store.version] = values.copy()
    assert store.usage()["linked"] > 0, "no merge linked a block"
    assert store._root.linked == atlas.Atlas.open(path)._root.linked
    check_versions(path, model)
    assert np.array_equal(atlas.Atlas.open(path).read_array_across_stacked("v"), values)
    report = atlas.Atlas.open(path).verify()
    assert report.ok and not report.orphans, report.problems
    # merges wrote indexes and repacked the few small blocks, not the data again: the
    # segments of all versions hold little more than the values written (random float64
    # does not compress); merges that copy hold them about once per level
    on_disk = sum(p.stat().st_size for p in path.glob("segments/*"))
    assert on_disk < 1.3 * raw, (on_disk, raw)


def test_a_store_that_keeps_no_versions_copies_instead(tmp_path, rng):
    store, values = built(tmp_path / "s", 200, rng)
    store.set_retention(older_than=0, keep_last=1)
    rewrite_and_flush(store, values, 2 * FANOUT, rng)
    assert store.usage()["linked"] == 0
    assert np.array_equal(atlas.Atlas.open(tmp_path / "s").read_array_across_stacked("v"),
                          values)


def test_mostly_superseded_blocks_are_copied_out(tmp_path, rng):
    """A block of which less than 1/LINKED_LIVE_SHARE is kept is not linked: its chunks are
    repacked, so no read decodes more than that many times what it uses."""
    path = tmp_path / "s"
    store, values = built(path, 128, rng)  # 8 full blocks of 16 datasets
    for i in range(8):  # rewrite 15 of 16 datasets of every block, in 8 flushes (2 merges)
        rows = np.array([b * 16 + k for b in range(8) for k in range(16) if k % 8 == i
                         and k != 0], np.int64)
        rewrite(store, values, rows, rng)
        store.flush()
    store.compact()  # nothing of the first blocks stays linked by anything
    root = atlas.Atlas.open(path)._root
    assert root.linked == []
    index = atlas.Atlas.open(path)._committed_index("v")
    used = np.bincount(index.block, weights=index.length, minlength=len(index.block_decoded))
    assert np.all(used * LINKED_LIVE_SHARE >= index.block_decoded)
    assert np.array_equal(atlas.Atlas.open(path).read_array_across_stacked("v"), values)


def test_compaction_and_expiry_free_linked_files_once_no_version_reads_them(tmp_path, rng):
    path = tmp_path / "s"
    store, values = built(path, 200, rng)
    rewrite_and_flush(store, values, 2 * FANOUT, rng)
    linked = [r.key for r in store._root.linked]
    assert linked
    store.verify(repair=True)  # the sweep must not take linked files for orphans
    assert all((path / key).exists() for key in linked)
    store.compact()
    assert store._root.linked == [] and {e[0] for e in store._root.retired} >= set(linked)
    store.expire(older_than=0, keep_last=1)
    assert not any((path / key).exists() for key in linked)
    fresh = atlas.Atlas.open(path)
    assert np.array_equal(fresh.read_array_across_stacked("v"), values)
    assert fresh.verify().ok and len(fresh.history()) <= 2  # the compaction and the expiry


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), commits=st.integers(FANOUT, 2 * FANOUT + 4),
       keep_last=st.integers(1, 6))
def test_every_retained_version_reads_back_through_links(seed, commits, keep_last):
    """Random rewrites, deletes, re-creations, compactions and expiries over merges that
    link: every retained version reads what it held, the store verifies, nothing is an
    orphan, and every file on disk is one the root lists."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s"
        n = 64
        store, values = built(path, n, rng)
        order = list(range(n))  # live datasets in creation order
        model = {store.version: (list(order), values.copy())}
        for _ in range(commits):
            action = rng.random()
            if action < 0.1:
                store.compact()
            elif action < 0.2:
                store.expire(older_than=0, keep_last=keep_last)
            else:
                for i in [i for i in order if rng.random() < 0.03]:
                    store.delete_dataset(names(n)[i])
                    order.remove(i)
                rows = np.sort(rng.choice(n, int(rng.integers(8, 40)), replace=False))
                rewrite(store, values, rows, rng)  # re-creates deleted ones among them
                order += [int(i) for i in rows if i not in order]
                store.flush(f"rewrite {len(rows)}")
            model[store.version] = (list(order), values.copy())
        kept = {v.generation for v in store.history()}
        for generation, (alive, expected) in model.items():
            if generation not in kept:
                continue
            old = atlas.Atlas.open(path, version=generation)
            assert old.list_datasets() == [names(n)[i] for i in alive]
            assert np.array_equal(old.read_array_across_stacked("v"), expected[alive])
        report = atlas.Atlas.open(path).verify()
        assert report.ok and not report.orphans, (report.problems, report.orphans)
        root = atlas.Atlas.open(path)._root
        on_disk = {str(p.relative_to(path)) for p in path.glob("segments/*")}
        assert on_disk <= root.keys()


# -- crafted files and roots ---------------------------------------------------------------

def _linking_segment(tmp_path: Path, decoded: int, file: int = 1, key=None) -> Path:
    """A segment with one chunk of 64 bytes in a block linked from another file."""
    path = tmp_path / "crafted.seg"
    writer = SegmentWriter(str(path))
    writer.link_block(key or "segments/00000001-" + "a" * 32 + ".seg", 4096, 8, 100, decoded,
                      1, 0)
    writer.chunks.append(0, 0, 0, 0, 64, 0)
    index = writer.finish()
    writer.release()
    if file != 1:
        index.blocks["file"][:] = file
    return path, index


def test_crafted_linked_blocks_are_refused(tmp_path):
    _path, index = _linking_segment(tmp_path, 64 * LINKED_LIVE_SHARE)
    assert index_problem(index, 8) is None
    _path, index = _linking_segment(tmp_path, 64 * LINKED_LIVE_SHARE + 1)
    assert "claims more decoded bytes" in index_problem(index, 8)
    _path, index = _linking_segment(tmp_path, 64, file=2)
    assert "does not list" in index_problem(index, 8)
    index.blocks["file"][:] = 1
    index.blocks["offset"][:] = 4090
    assert "outside the file" in index_problem(index, 8)


def _forged_root(doc: dict, version: int) -> bytes:
    import zstandard

    from atlas.codecs import checksum

    payload = zstandard.ZstdCompressor().compress(json.dumps(doc).encode())
    return root_format.HEADER.pack(root_format.MAGIC, version, checksum(payload),
                                   len(payload)) + payload


def test_a_root_listing_a_file_as_linked_and_live_or_off_grammar_is_corrupt(tmp_path, rng):
    store, _values = built(tmp_path / "s", 8, rng)
    root = store._root
    live = root.segments["v"][0]
    for linked, match in (([live.to_json()], "listed twice"),
                          ([["../escape.seg", 10, 0]], "not a key")):
        doc = dict(root.to_json(), version=3, linked=linked)
        with pytest.raises(CorruptionError, match=match):
            root_format.decode(_forged_root(doc, 3), "crafted")
    # linked files only in a version-3 root: a version-2 one listing them is refused (an
    # atlas knowing only version 2 would drop the list and sweep the files away)
    doc = dict(root.to_json(), linked=[["segments/00000001-" + "a" * 32 + ".seg", 10, 0]])
    with pytest.raises(CorruptionError, match="version-2"):
        root_format.decode(_forged_root(doc, 2), "crafted")
    with pytest.raises(atlas.FormatError, match="newer than this atlas"):
        newer = root_format.VERSION + 1
        root_format.decode(_forged_root(dict(root.to_json(), version=newer), newer), "crafted")


def test_a_store_is_format_3_while_it_lists_linked_files(tmp_path, rng):
    """What keeps an atlas that knows only version 2 from writing to (and sweeping) a store
    whose merges linked blocks: the root says version 3 exactly while it lists linked files;
    every version record written meanwhile says so too."""
    path = tmp_path / "s"
    store, values = built(path, 200, rng)
    assert store.format_version == 2 and store.usage()["format"] == 2
    rewrite_and_flush(store, values, FANOUT, rng)
    assert store._root.linked and store.format_version == 3
    raw = (path / "manifest.atlas").read_bytes()
    assert root_format.HEADER.unpack_from(raw)[1] == 3
    assert atlas.Atlas.open(path).usage()["format"] == 3
    store.compact()
    assert not store._root.linked and atlas.Atlas.open(path).format_version == 2
    for version in store.history()[:-1]:  # records of both versions open (not the empty one)
        old = atlas.Atlas.open(path, version=version.generation)
        assert old.read_array_across_stacked("v").shape[0] == 200


def test_a_missing_linked_file_is_reported_and_reads_fail_cleanly(tmp_path, rng):
    path = tmp_path / "s"
    store, values = built(path, 200, rng)
    rewrite_and_flush(store, values, 2 * FANOUT, rng)
    victim = store._root.linked[0].key
    (path / victim).unlink()
    report = atlas.Atlas.open(path).verify()
    assert any("missing" in p and victim in p for p in report.problems), report.problems
    with pytest.raises((CorruptionError, OSError)):
        atlas.Atlas.open(path).read_array_across_stacked("v")


def test_a_linked_file_may_itself_link_files_that_are_gone(tmp_path, rng):
    """A merged segment M1 with blocks of its own that links a file Y: the next merge links
    M1's blocks (M1 becomes a linked file) but copies the little left of Y (Y is retired and,
    once expired, deleted). M1's own index still names Y; nothing reads it, and verify must
    not report it."""
    path = tmp_path / "s"
    store = atlas.Atlas.create(path, block_size=BLOCK)
    values = {}

    def write(names_):  # 128 bytes a dataset: packed (a chunk of 256 gets a block of its own)
        for name in names_:
            values[name] = rng.normal(size=16)
        store.write_array_across_stacked("v", list(names_), np.stack([values[n] for n in names_]),
                                         dims=["depth"])
        store.flush()

    # small flushes, copied into the merged segment's own block: together over a quarter of
    # a block, so that the next merge links that block
    per_flush = max(2, 16 // (FANOUT - 1))
    for f in range(FANOUT - 1):
        write([f"s{f}_{i}" for i in range(per_flush)])
    big = [f"y{i}" for i in range(16)]  # one full block: linked
    write(big)
    m1 = store._root.segments["v"][-1]
    y = {r.key for r in store._root.linked}
    assert len(y) == 1 and store._files.segment(m1).linked
    for f in range(FANOUT - 1):  # 15 of Y's 16 datasets again, in small flushes
        write(big[1 + 2 * f: 3 + 2 * f] if f < FANOUT - 2 else big[1 + 2 * f:])
    root = store._root
    assert m1.key in {r.key for r in root.linked}, "the next merge did not link M1's blocks"
    assert not y & {r.key for r in root.linked} and y <= {e[0] for e in root.retired}
    store.expire(older_than=0, keep_last=1)
    assert not (path / next(iter(y))).exists()
    fresh = atlas.Atlas.open(path)
    report = fresh.verify()
    assert report.ok and not report.orphans, report.problems
    got = fresh.read_array_across_stacked("v", list(values))
    assert np.array_equal(got, np.stack(list(values.values())))


def test_a_file_mostly_superseded_is_copied_out_and_freed_by_expiry(tmp_path, rng):
    """A file of which a merge keeps one block of many is not linked (the block would keep
    the whole file): its live chunks are copied, it is retired, and an expiry deletes it."""
    path = tmp_path / "s"
    store = atlas.Atlas.create(path, block_size=BLOCK)
    n = 600  # 600 x 128 bytes: about 19 full blocks in one file

    def write(names_):
        store.write_array_across_stacked("v", names_, rng.normal(size=(len(names_), DEPTH)),
                                         dims=["depth"])
        store.flush()

    first = [f"d{i:04d}" for i in range(n)]
    write(first)
    big = store._root.segments["v"][0].key
    write(first[32:])  # everything but its first block's datasets again
    for j in range(FANOUT - 2):
        write([f"n{j}_{i:04d}" for i in range(n)])
    assert len(store._root.segments["v"]) == 1, "the merge did not run"
    assert big not in {r.key for r in store._root.linked}
    store.expire(older_than=0, keep_last=1)
    assert not (path / big).exists()
    fresh = atlas.Atlas.open(path)
    assert fresh.verify().ok and len(fresh.list_datasets()) == n + (FANOUT - 2) * n


def test_flushes_of_chunks_under_a_quarter_block_keep_files_few(tmp_path, rng):
    """Chunks with a block of their own but under a quarter of block_size, one per flush, are
    copied by the merges (as small files always were): the store keeps a few dozen files."""
    path = tmp_path / "s"
    store = atlas.Atlas.create(path, block_size=BLOCK)
    values = rng.normal(size=(300, 64))  # 512 bytes: a block of its own, an eighth of BLOCK
    for i in range(300):
        store.write_array_across_stacked("v", [f"p{i}"], values[i:i + 1], dims=["depth"])
        store.flush()
    root = store._root
    assert len(root.segments["v"]) + len(root.linked) < 40, (len(root.segments["v"]),
                                                             len(root.linked))
    assert np.array_equal(atlas.Atlas.open(path).read_array_across_stacked("v"), values)
