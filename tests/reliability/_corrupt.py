"""Damaging store files and predicting what that must do to reads (the corruption oracle).

A template store is built once from the seeded workload (several segments per array, chunks
rewritten within a flush, deleted datasets, strings, written masks). Its layout is parsed with
plain struct/numpy code: which byte ranges of each segment are the header, each chunk record,
the index and the trailer, and which (dataset, array) reads depend on each record. A damage is
("flip", file, offset, xor bytes) or ("truncate", file, new length). ``check_damage`` applies
one to a fresh copy and asserts:

- every read the damage touches raises CorruptionError naming the file; every other read (and
  a stacked read across datasets) returns exactly what the undamaged store returned;
- ``verify()`` lists the damaged file and nothing else;
- a damaged manifest makes ``Atlas.open`` raise CorruptionError (bytes fail the checksum or do
  not decode) or FormatError (magic or version bytes hit, or shorter than its header), naming it;
- ``compact()`` either refuses (CorruptionError) or, when no live chunk was hit, leaves a store
  that still reads back unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field

import numpy as np
import zstandard

import atlas
from atlas.format import segment as segfmt

try:
    from . import _model
except ImportError:  # pragma: no cover - run from a subprocess by path
    import _model  # type: ignore[no-redef]

MANIFEST = "manifest.atlas"
SEED = 11


def build_template(path: str, batches: int = 14) -> None:
    """A store with history: flushes, one compaction half-way, deletions, rewrites."""
    store = atlas.Atlas.create(path)
    model = _model.Model()
    for b in range(batches):
        _model.run_batch(SEED, b, model, store)
        store.flush()
        if b == batches // 2:
            store.compact(grace=0.0)  # no retired files: verify covers what readers use
    rng = np.random.default_rng(SEED)
    for i in range(4):  # datasets that survive, with every kind of array, over two flushes
        ds = store.create_dataset(f"keep{i}")
        for kind, (dtype, dims, shape, chunks, fill) in _model.ARRAYS.items():
            ds.define_array(kind, dtype, dims, list(shape), list(chunks), fill)
            start, size = _model._window(rng, shape)
            ds.write_array(kind, list(start), _model._draw_data(rng, kind, size))
        store.flush()
    # one chunk rewritten twice within a flush: a dead record inside a live segment
    name = next(n for n in store.list_datasets() if "count" in store.open_dataset(n).list_arrays())
    ds = store.open_dataset(name)
    ds.write_array("count", [0], np.arange(7, dtype=np.int16))
    ds.write_array("count", [0], np.arange(7, 14, dtype=np.int16))
    store.flush()


@dataclass
class SegmentLayout:
    key: str
    array: str
    size: int
    rows: list[tuple[int, int, int]]  # (start, end, row number) of each chunk record
    index: tuple[int, int]  # [start, end) of the index + trailer
    readers: dict[int, set[tuple[str, str]]] = field(default_factory=dict)  # row -> reads


@dataclass
class Layout:
    root: str
    segments: dict[str, SegmentLayout]
    manifest_size: int
    pairs: list[tuple[str, str]]  # every (dataset, array) holding an array
    clean: dict[tuple[str, str], np.ndarray]

    def files(self) -> list[str]:
        return [MANIFEST, *sorted(self.segments)]


def _manifest_doc(path: str) -> dict:
    """The manifest document, parsed independently of atlas: u64 header length, header JSON
    (datasets as names + end offsets), then the records' JSON texts back to back."""
    raw = open(os.path.join(path, MANIFEST), "rb").read()
    payload = zstandard.ZstdDecompressor().decompress(raw[24:])
    header_length = int.from_bytes(payload[:8], "little")
    doc = json.loads(payload[8 : 8 + header_length])
    blob = payload[8 + header_length :]
    names, ends = doc["datasets"]["names"], doc["datasets"]["ends"]
    doc["datasets"] = {name: json.loads(blob[start:end])
                       for name, start, end in zip(names, [0, *ends[:-1]], ends)}
    return doc


def parse_layout(root: str) -> Layout:
    """The template's byte layout and its reads, from plain struct/numpy parsing."""
    doc = _manifest_doc(root)
    slot_of = {}
    for ds_name, record in doc["datasets"].items():
        for array, entry in record["arrays"].items():
            slot_of[entry["slot"]] = (ds_name, array)
    segments: dict[str, SegmentLayout] = {}
    for array, refs in doc["segments"].items():
        newest: dict[tuple[int, int], tuple[str, int]] = {}
        for key, size, _rows in refs:
            raw = open(os.path.join(root, key), "rb").read()
            assert len(raw) == size
            trailer = segfmt.TRAILER.unpack(raw[-segfmt.TRAILER.size:])
            n_rows, index_offset = trailer[3], trailer[4]
            cols = np.frombuffer(raw[index_offset:index_offset + trailer[5]], "<i8")
            cols = cols.reshape(len(segfmt.COLUMNS), n_rows)
            c = {name: cols[i] for i, name in enumerate(segfmt.COLUMNS)}
            rows = []
            for r in range(n_rows):
                start = int(c["offset"][r])
                rows.append((start, start + int(c["stored_length"][r] + c["mask_length"][r]), r))
                newest[(int(c["slot"][r]), int(c["chunk"][r]))] = (key, r)
            segments[key] = SegmentLayout(key, array, size, rows, (index_offset, size))
        for (slot, _chunk), (key, r) in newest.items():
            if slot in slot_of:
                segments[key].readers.setdefault(r, set()).add(slot_of[slot])
    store = atlas.Atlas.open(root)
    pairs, clean = [], {}
    for ds_name in store.list_datasets():
        ds = store.open_dataset(ds_name)
        for array in ds.list_arrays():
            pairs.append((ds_name, array))
            clean[(ds_name, array)] = ds.read_array(array)
    size = os.path.getsize(os.path.join(root, MANIFEST))
    return Layout(root, segments, size, pairs, clean)


# -- damages ---------------------------------------------------------------------------------------


def region_choices(layout: Layout, file: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of the regions of a file, for sampling damages evenly over them."""
    if file == MANIFEST:
        return [("manifest-header", 0, 24), ("manifest-payload", 24, layout.manifest_size)]
    seg = layout.segments[file]
    out = [("header", 0, len(segfmt.HEADER)), ("index", seg.index[0], seg.size -
                                                 segfmt.TRAILER.size),
           ("trailer", seg.size - segfmt.TRAILER.size, seg.size)]
    live = [r for r in seg.rows if seg.readers.get(r[2])]
    dead = [r for r in seg.rows if not seg.readers.get(r[2])]
    if live:
        out.append(("live-record", live[0][0], live[-1][1]))
    if dead:
        out.append(("dead-record", dead[0][0], dead[-1][1]))
    return [r for r in out if r[2] > r[1]]


def draw_damage(rng: np.random.Generator, layout: Layout) -> tuple:
    files = layout.files()
    file = MANIFEST if rng.random() < 0.15 else files[int(rng.integers(1, len(files)))]
    size = layout.manifest_size if file == MANIFEST else layout.segments[file].size
    if rng.random() < 0.2:
        return ("truncate", file, int(rng.integers(0, size)))
    _name, lo, hi = region_choices(layout, file)[int(rng.integers(0, len(region_choices(
        layout, file))))]
    offset = int(rng.integers(lo, hi))
    n = int(min(rng.integers(1, 9), size - offset))
    return ("flip", file, offset, bytes(int(x) for x in rng.integers(1, 256, n)))


def apply_damage(root: str, damage: tuple) -> None:
    path = os.path.join(root, damage[1])
    if damage[0] == "truncate":
        os.truncate(path, damage[2])
        return
    _kind, _file, offset, xor = damage
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(len(xor))
        f.seek(offset)
        f.write(bytes(a ^ b for a, b in zip(old, xor)))


def region_of(layout: Layout, damage: tuple) -> str:
    """Where a damage landed, for the figures."""
    if damage[0] == "truncate":
        return f"truncated {'manifest' if damage[1] == MANIFEST else 'segment'}"
    if damage[1] == MANIFEST:
        return "manifest header" if damage[2] < 24 else "manifest payload"
    seg = layout.segments[damage[1]]
    offset = damage[2]
    if offset < len(segfmt.HEADER):
        return "segment header"
    if offset >= seg.size - segfmt.TRAILER.size:
        return "segment trailer"
    if offset >= seg.index[0]:
        return "segment index"
    return "live chunk record" if affected_reads(layout, damage) else "dead chunk record"


def affected_reads(layout: Layout, damage: tuple) -> set[tuple[str, str]]:
    """The (dataset, array) reads that depend on a damaged byte of a segment."""
    seg = layout.segments[damage[1]]
    every = {p for p in layout.pairs if p[1] == seg.array}
    if damage[0] == "truncate":
        return every  # the size no longer matches the manifest: the file is unusable
    lo, hi = damage[2], damage[2] + len(damage[3])
    if hi > seg.index[0]:
        return every  # index or trailer: every read of this array name loads the footer
    hit: set[tuple[str, str]] = set()
    for start, end, r in seg.rows:
        if start < hi and lo < end:
            hit |= seg.readers.get(r, set())
    return hit


# -- checking -------------------------------------------------------------------------------------


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if a.dtype == object:
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def check_damage(layout: Layout, work: str, damage: tuple) -> str:
    """Copy the template to ``work``, damage it, check everything; returns an outcome label."""
    return f"{region_of(layout, damage)}: {_check(layout, work, damage)}"


def _check(layout: Layout, work: str, damage: tuple) -> str:
    if os.path.exists(work):
        shutil.rmtree(work)
    shutil.copytree(layout.root, work)
    damaged_path = os.path.join(atlas.Atlas.open(work).location, damage[1])
    early = atlas.Atlas.open(work)  # holds the manifest only: no segment is mapped yet
    apply_damage(work, damage)
    if damage[1] == MANIFEST:
        return _check_manifest_damage(early, work, damaged_path)
    store = atlas.Atlas.open(work)
    affected = affected_reads(layout, damage)
    for pair in layout.pairs:
        ds = store.open_dataset(pair[0])
        try:
            got = ds.read_array(pair[1])
        except atlas.CorruptionError as err:
            assert pair in affected, f"{pair} raised but does not use the damaged bytes: {err}"
            assert damaged_path in str(err), f"error does not name {damaged_path}: {err}"
            continue
        assert pair not in affected, f"{pair} read without error across damaged bytes {damage}"
        assert _same(got, layout.clean[pair]), f"{pair} returned wrong data after {damage}"
    _check_stacked(store, layout, affected, damage[1], damaged_path)
    report = atlas.Atlas.open(work).verify()
    assert any(damaged_path in p for p in report.problems), (damage, report.problems)
    others = [p for p in report.problems if damaged_path not in p]
    assert not others, f"verify blames undamaged files: {others}"
    return _check_compact(layout, work, affected, damage)


def _check_stacked(store, layout, affected, key, damaged_path) -> None:
    array = layout.segments[key].array
    names = [d for d, a in layout.pairs if a == array]
    if not names:
        return
    try:
        stacked = store.read_array_across_stacked(array, names)
    except atlas.CorruptionError as err:
        assert any(p[1] == array for p in affected), f"stacked read raised needlessly: {err}"
        assert damaged_path in str(err)
        return
    assert not affected, "stacked read went across damaged bytes without an error"
    for i, name in enumerate(names):
        assert _same(stacked[i], layout.clean[(name, array)])


def _check_manifest_damage(early, work: str, damaged_path: str) -> str:
    try:
        atlas.Atlas.open(work)
    except (atlas.CorruptionError, atlas.FormatError) as err:
        assert damaged_path in str(err), f"error does not name the manifest: {err}"
        outcome = f"open raised {type(err).__name__}"
    else:
        raise AssertionError("a damaged manifest opened")
    problems = early.verify().problems
    assert any(damaged_path in p for p in problems), problems
    return outcome


def _check_compact(layout, work, affected, damage) -> str:
    """compact() may refuse (it checks every chunk it copies) or leave the damage where it was
    (a segment needing no rewrite); either way no read may turn into wrong data."""
    store = atlas.Atlas.open(work)
    try:
        store.compact(grace=0.0)
        outcome = "compact ran"
    except atlas.CorruptionError:
        outcome = "compact refused"
    fresh = atlas.Atlas.open(work)
    for pair in layout.pairs:
        try:
            got = fresh.open_dataset(pair[0]).read_array(pair[1])
        except atlas.CorruptionError as err:
            assert pair in affected, f"{pair} broken by compact after {damage}: {err}"
            continue
        assert _same(got, layout.clean[pair]), f"{pair} wrong after compact after {damage}"
    return outcome


def main(template: str, work: str, count: int, seed: int) -> None:
    """Subprocess entry: ``count`` seeded damages, one JSON line each, exit 0 when all hold."""
    layout = parse_layout(template)
    rng = np.random.default_rng(seed)
    for i in range(count):
        damage = draw_damage(rng, layout)
        shown = [d.hex() if isinstance(d, bytes) else d for d in damage]
        print(json.dumps({"i": i, "damage": shown}), flush=True)  # on record before the read
        outcome = check_damage(layout, work, damage)
        print(json.dumps({"i": i, "outcome": outcome}), flush=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
