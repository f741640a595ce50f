"""Damaging store files and predicting what that must do to reads (the corruption oracle).

A template store is built once from the seeded workload and then some (several catalog parts
and segments per array name, the size-tiered merge and a compaction behind it, blocks shared by
many datasets, a chunk bigger than a block, chunks superseded and datasets deleted, strings and
written masks). Its layout is parsed with plain struct/numpy/zstandard code, independently of
atlas: the byte regions of every file the root references, and what each region is needed for:

- root (``manifest.atlas``) header or payload: everything;
- catalog part: its magic by no read (``verify`` checks it); a section by every read that loads
  that table (a table is merged from its sections in every part); the footer and trailer by
  every read of any table (a table load reads every part's footer);
- segment: its magic by no read; a block by every read of a (dataset, array) whose newest chunk
  lies in it (small chunks of many datasets share a block); the index sections, footer and
  trailer by every read of that array name (a read loads the index of all its segments).
- linked file (a segment whose blocks a merged segment lists where they lie): its blocks as
  above, reached through the merged segment's index; its own magic, index, footer and trailer
  by no read (``verify`` checks them).

A truncated file fails its size check: a truncated part breaks every table read, a truncated
segment every read of its array name. A damage is ("flip", key, offset, xor bytes) or
("truncate", key, new length). ``check_damage`` applies one to a fresh copy and asserts:

- every read that needs a damaged byte raises CorruptionError naming the file; every other read
  returns exactly what the undamaged store returned (stacked reads across datasets too);
- ``verify()`` lists the damaged file and nothing else;
- a damaged root makes ``Atlas.open`` raise CorruptionError or FormatError naming it;
- ``compact()`` either refuses (CorruptionError) or runs, and afterwards no read returns wrong
  data.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from dataclasses import dataclass, field

import numpy as np
import zstandard

import atlas

try:
    from . import _model
except ImportError:  # pragma: no cover - run from a subprocess by path
    import _model  # type: ignore[no-redef]

ROOT = "manifest.atlas"
ROOT_HEADER = struct.Struct("<8sIIQ")  # magic, version, crc32c, payload length
TRAILER = struct.Struct("<8sIIQQQ")  # magic, version, crc32c, footer offset, length, decoded
MAGIC = 8
SEED = 11
BLOCK_SIZE = 4096  # the smallest allowed: a small template still has many blocks per segment

# resources a read may need; a damaged region takes one away
EVERYTHING = ("root",)
FOOTERS = ("footers",)  # every catalog part's trailer and footer


def build_template(path: str, batches: int = 14) -> None:
    """A store with history: flushes, a compaction half-way, merges, deletions, rewrites.
    Checked against the model of what was written: the undamaged reads the oracle compares
    with are right."""
    store = atlas.Atlas.create(path, block_size=BLOCK_SIZE)
    model = _model.Model()
    for b in range(batches):
        _model.run_batch(SEED, b, model, store)
        store.flush()
        if b == batches // 2:
            store.compact(grace=0.0)
    rng = np.random.default_rng(SEED)
    # two datasets that survive, with every kind of array, written again and again, one flush
    # each: enough flushes in a row for the size-tiered merge to run on the catalog and on
    # every array name (and superseded chunks for it to drop)
    for i in range(9):
        name = f"keep{i % 2}"
        if i < 2:
            store.create_dataset(name)
            model.datasets[name] = _model.DatasetModel()
        for kind in _model.ARRAYS:
            _write(store, model, name, kind, rng)
            store.open_dataset(name).set_array_attribute(kind, "unit", f"u{i}")
            model.datasets[name].arrays[kind].attrs["unit"] = f"u{i}"
        store.flush()
    extra: dict[str, dict] = {}  # dataset -> array -> values, outside the model's kinds
    # chunks bigger than a block get a block of their own (the edge chunk is packed)
    for i in range(2):
        ds = store.create_dataset(f"big{i}")
        ds.define_array("big", "float64", ["i"], [1500], [600], float("nan"))
        extra[f"big{i}"] = {"big": rng.normal(size=1500)}
        ds.write_array("big", [0], extra[f"big{i}"]["big"])
    # many small one-chunk arrays in one flush: blocks that many datasets share (a chunk of a
    # sixteenth of a block or more gets a block of its own)
    for i in range(7):
        ds = store.create_dataset(f"row{i}")
        ds.define_array("row", "float64", ["i"], [24], None, None)
        extra[f"row{i}"] = {"row": rng.normal(size=24)}
        ds.write_array("row", [0], extra[f"row{i}"]["row"])
    store.flush()
    # merges that link: an array name whose flushes fill blocks (two chunks of 128 bytes per
    # dataset, 8 datasets a flush), half of each flush's datasets written again by the next
    # (blocks partly superseded): the FANOUT-th flush's merge lists the blocks where they lie
    for f in range(8):
        for i in range(4 * f, 4 * f + 8):
            name = f"lk{i}"
            if name not in store:
                store.create_dataset(name).define_array("lk", "float64", ["i"], [32], [16],
                                                        None)
            extra[name] = {"lk": rng.normal(size=32)}
            store.open_dataset(name).write_array("lk", [0], extra[name]["lk"])
        store.flush()
    # one chunk written twice within a flush (a superseded row in a live block), chunks
    # rewritten or deleted whose blocks no read needs any more (dead blocks)
    name = next(n for n, d in model.datasets.items() if "count" in d.arrays)
    for values in (np.arange(7, dtype=np.int16), np.arange(7, 14, dtype=np.int16)):
        store.open_dataset(name).write_array("count", [0], values)
        model.datasets[name].arrays["count"].values[:7] = values
        model.datasets[name].arrays["count"].written[:7] = True
    extra["big0"]["big"][:600] = rng.normal(size=600)
    store.open_dataset("big0").write_array("big", [0], extra["big0"]["big"][:600])
    store.open_dataset("big1").delete_array("big")
    del extra["big1"]["big"]
    store.delete_dataset("row3")
    del extra["row3"]
    store.flush()
    _check_template(path, model, extra)


def _write(store, model: _model.Model, name: str, kind: str, rng) -> None:
    """A random window of array ``kind`` of dataset ``name`` (defined on first use), in the
    store and the model."""
    arrays = model.datasets[name].arrays
    if kind not in arrays:
        dtype, dims, shape, chunks, fill = _model.ARRAYS[kind]
        store.open_dataset(name).define_array(kind, dtype, dims, list(shape), list(chunks), fill)
        arrays[kind] = _model.new_array(kind)
    start, size = _model._window(rng, arrays[kind].values.shape)
    data = _model._draw_data(rng, kind, size)
    box = tuple(slice(b, b + n) for b, n in zip(start, size))
    arrays[kind].values[box] = data
    arrays[kind].written[box] = True
    store.open_dataset(name).write_array(kind, list(start), data)


def _check_template(path: str, model: _model.Model, extra: dict) -> None:
    store = atlas.Atlas.open(path)
    got = _by_dataset(_model.snapshot_store(store))
    for name, lines in _by_dataset(_model.snapshot_model(model)).items():
        assert got.pop(name) == lines, f"template dataset {name} differs from its model"
    assert set(got) == set(extra)
    for name, arrays in extra.items():
        assert store.open_dataset(name).list_arrays() == list(arrays)
        for array, values in arrays.items():
            assert store.open_dataset(name).read_array(array).tobytes() == values.tobytes()


def _by_dataset(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("dataset "):
            current = out.setdefault(line[len("dataset "):], [])
        current.append(line)
    return out


# -- parsing, independently of atlas -------------------------------------------------------------


def _root_doc(raw: bytes) -> dict:
    payload = raw[ROOT_HEADER.size :]
    return json.loads(zstandard.ZstdDecompressor().decompress(payload))


def _container(raw: bytes) -> tuple[int, int, list]:
    """(footer offset, footer length, sections) of a catalog part or a segment."""
    _magic, _version, _crc, offset, length, decoded = TRAILER.unpack(raw[-TRAILER.size :])
    footer = zstandard.ZstdDecompressor().decompress(raw[offset : offset + length],
                                                     max_output_size=decoded)
    return offset, length, json.loads(footer)["sections"]


def _section(raw: bytes, entry: list) -> dict[str, object]:
    """The columns of one section that the oracle needs (integer and text kinds)."""
    _sid, offset, stored, decoded, rows, _crc, spec = entry
    dctx = zstandard.ZstdDecompressor()
    if spec and len(spec[0]) == 5:  # framed: each column its own zstd frame, back to back
        pieces, at = [], offset
        for name, kind, n, frame, _frame_crc in spec:
            data = dctx.decompress(raw[at : at + frame], max_output_size=n)
            if pieces and pieces[-1][0] == name:  # a big column's next piece
                data = pieces.pop()[2] + data
            pieces.append((name, kind, data))
            at += frame
    else:
        data = dctx.decompress(raw[offset : offset + stored], max_output_size=decoded)
        pieces, at = [], 0
        for name, kind, n in spec:
            pieces.append((name, kind, data[at : at + n]))
            at += n
    out = {}
    for name, kind, piece in pieces:
        if kind in ("i8", "i8d"):
            values = np.frombuffer(piece, "<i8")
            out[name] = np.cumsum(values) if kind == "i8d" else values
        elif kind == "i8s":  # (first, step)
            first, step = np.frombuffer(piece, "<i8").tolist()
            out[name] = first + step * np.arange(rows, dtype=np.int64)
        elif kind == "u1":
            out[name] = np.frombuffer(piece, np.uint8)
        elif kind == "txt":
            out[name] = _texts(piece, rows)
    return out


def _texts(piece: bytes, rows: int) -> list[str]:
    if piece[0] == 0:
        return piece[1:].decode().split("\x00") if rows else []
    ends = np.cumsum(np.frombuffer(piece[1 : 1 + 8 * rows], "<i8")).tolist()
    blob = piece[1 + 8 * rows :]
    return [blob[a:b].decode() for a, b in zip([0, *ends[:-1]], ends)]


@dataclass
class Region:
    key: str  # the file
    kind: str  # for sampling and the figures
    start: int
    end: int
    needs: tuple | None  # the resource a read must have to use these bytes (None: no read)


@dataclass(frozen=True)
class Read:
    """One call of the public API: kind "names" (list_datasets), "arrays" (list_arrays),
    "attrs" (attributes), "meta" (array_meta + array_stats), "data" (read_array),
    "array_attrs" (array_attributes), "stacked" (read_array_across_stacked over every
    dataset holding the array)."""

    kind: str
    dataset: str | None = None
    array: str | None = None
    names: tuple[str, ...] = ()  # stacked: the datasets, in creation order


@dataclass
class Layout:
    root: str
    sizes: dict[str, int]  # every file the root references, and the root itself
    regions: list[Region]
    reads: dict[Read, frozenset]  # read -> the resources it needs
    clean: dict[Read, str] = field(default_factory=dict)  # read -> its undamaged result

    def of_kind(self, kind: str) -> list[Region]:
        return [r for r in self.regions if r.kind == kind]

    def kinds(self) -> list[str]:
        return sorted({r.kind for r in self.regions})


def parse_layout(root: str) -> Layout:
    """The template's byte regions, its reads and what each read needs."""
    raw_root = open(os.path.join(root, ROOT), "rb").read()
    doc = _root_doc(raw_root)
    sizes = {ROOT: len(raw_root)}
    regions = [Region(ROOT, "root header", 0, ROOT_HEADER.size, EVERYTHING),
               Region(ROOT, "root payload", ROOT_HEADER.size, len(raw_root), EVERYTHING)]
    tables: dict[tuple, dict[int, tuple[bool, dict]]] = {}  # sid -> key -> (dead, row)
    names_in: dict[str, set[str]] = {}  # part -> the names its datasets section has rows for
    for key, size, _level in doc["parts"]:
        raw = open(os.path.join(root, key), "rb").read()
        assert len(raw) == size, key
        sizes[key] = size
        footer_at, footer_len, sections = _container(raw)
        regions.append(Region(key, "part magic", 0, MAGIC, None))
        for entry in sections:
            sid = tuple(entry[0])
            if sid[0] not in TABLES:  # the names filter: only creating a dataset reads it
                regions.append(Region(key, f"part section {sid[0]}", entry[1],
                                      entry[1] + entry[2], None))
                continue
            needs = ("datasets", key) if sid == ("datasets",) else ("table", sid)
            regions.append(Region(key, f"part section {sid[0]}", entry[1], entry[1] + entry[2],
                                  needs))
            columns = _section(raw, entry)
            if sid == ("datasets",):
                names_in[key] = set(columns["name"])
            rows = tables.setdefault(sid, {})
            for i, k in enumerate(columns["key"].tolist()):  # a newer part's row wins
                rows[k] = (bool(columns["dead"][i]),
                           {n: c[i] for n, c in columns.items() if n in ("name", "slot")})
        regions += [Region(key, "part footer", footer_at, footer_at + footer_len, FOOTERS),
                    Region(key, "part trailer", size - TRAILER.size, size, FOOTERS)]
    live = {k: row["name"] for k, (dead, row) in sorted(tables[("datasets",)].items())
            if not dead}
    owner = {}  # slot -> (dataset, array) of every live array
    for sid, rows in tables.items():
        if sid[0] == "array":
            for did, (dead, row) in rows.items():
                if not dead and did in live:
                    owner[int(row["slot"])] = (live[did], sid[1])
    users: dict[tuple, set] = {}  # ("block", key, n) -> the (dataset, array) whose chunk it holds
    # files whose blocks live segments link: reads use their blocks (through the linking
    # segment's index), never their own index
    in_linked = {}  # (key, block offset) -> ("block", key, n)
    for key, size, _level in doc.get("linked", []):
        raw, footer_at, footer_len, by_id, blocks = _segment_file(root, key, size, sizes)
        own = blocks.get("file", np.zeros(len(blocks["offset"]), np.int64)) == 0
        for n in np.flatnonzero(own).tolist():
            start, stored = int(blocks["offset"][n]), int(blocks["stored"][n])
            regions.append(Region(key, "block", start, start + stored, ("block", key, n)))
            in_linked[(key, start)] = ("block", key, n)
        regions += [Region(key, "linked file index", 0, MAGIC, None),
                    Region(key, "linked file index", footer_at, footer_at + footer_len, None),
                    Region(key, "linked file index", size - TRAILER.size, size, None)]
        regions += [Region(key, "linked file index", e[1], e[1] + e[2], None)
                    for e in by_id.values()]
    for array, refs in doc["segments"].items():
        newest = {}
        for key, size, _level in refs:
            raw, footer_at, footer_len, by_id, blocks = _segment_file(root, key, size, sizes)
            chunks = _section(raw, by_id[("chunks",)])
            files = [key, *(_section(raw, by_id[("linked",)])["key"] if ("linked",) in by_id
                            else [])]
            file_of = blocks.get("file", np.zeros(len(blocks["offset"]), np.int64)).tolist()
            resource = []  # per block of this segment: what a read of its chunks needs
            regions.append(Region(key, "segment magic", 0, MAGIC, None))
            for n, (start, stored) in enumerate(zip(blocks["offset"].tolist(),
                                                    blocks["stored"].tolist())):
                if file_of[n]:  # a block of a linked file, where it lies
                    resource.append(in_linked[(files[file_of[n]], start)])
                    continue
                regions.append(Region(key, "block", start, start + stored, ("block", key, n)))
                resource.append(("block", key, n))
            for sid, entry in by_id.items():
                regions.append(Region(key, f"segment section {sid[0]}", entry[1],
                                      entry[1] + entry[2], ("index", array)))
            regions += [Region(key, "segment footer", footer_at, footer_at + footer_len,
                               ("index", array)),
                        Region(key, "segment trailer", size - TRAILER.size, size,
                               ("index", array))]
            for slot, chunk, block in zip(chunks["slot"].tolist(), chunks["chunk"].tolist(),
                                          chunks["block"].tolist()):
                newest[(slot, chunk)] = resource[block]  # later rows win
        for (slot, _chunk), block in newest.items():
            if slot in owner:
                users.setdefault(block, set()).add(owner[slot])
    for region in regions:  # a block no read needs is dead weight: "dead block"
        if region.kind == "block":
            region.kind = "live block" if region.needs in users else "dead block"
    parts = [key for key, _size, _level in doc["parts"]]
    layout = Layout(root, sizes, regions, _reads(tables, live, owner, users, parts, names_in))
    layout.clean = perform_all(root, layout.reads)
    return layout


def _segment_file(root: str, key: str, size: int, sizes: dict[str, int]):
    """(bytes, footer offset, footer length, sections by id, blocks columns) of a segment the
    root lists with ``size`` bytes, recorded in ``sizes``."""
    raw = open(os.path.join(root, key), "rb").read()
    assert len(raw) == size, key
    sizes[key] = size
    footer_at, footer_len, sections = _container(raw)
    by_id = {tuple(e[0]): e for e in sections}
    return raw, footer_at, footer_len, by_id, _section(raw, by_id[("blocks",)])


TABLES = ("datasets", "schemas", "array", "attr", "array_attr")


def _reads(tables, live, owner, users, parts, names_in) -> dict[Read, frozenset]:
    """Every read the oracle checks, with the resources it needs. A read by name finds its
    dataset id by searching the parts' datasets sections newest first, up to the first that
    holds a row of the name (atlas does so for a handle's first few lookups, and the oracle
    reads each dataset on a handle of its own); a list of every dataset needs them all."""
    every_name = {("datasets", p) for p in names_in}
    sids = list(tables)
    holds: dict[tuple, set] = {}
    for block, pairs in users.items():
        for pair in pairs:
            holds.setdefault(pair, set()).add(block)
    reads = {Read("names"): frozenset({EVERYTHING, FOOTERS} | every_name)}
    arrays_of: dict[str, list[str]] = {}
    for dataset, array in owner.values():
        arrays_of.setdefault(dataset, []).append(array)
    holders = {array: tuple(d for d in live.values() if array in arrays_of.get(d, ()))
               for array in sorted({a for _d, a in owner.values()})}
    every_array = {("table", s) for s in sids if s[0] == "array"}
    every_attr = {("table", s) for s in sids if s[0] == "attr"}
    for dataset in live.values():
        path = []
        for part in reversed(parts):
            if part in names_in:
                path.append(("datasets", part))
                if dataset in names_in[part]:
                    break
        base = {EVERYTHING, FOOTERS, *path}
        reads[Read("arrays", dataset)] = frozenset(base | every_array)
        reads[Read("attrs", dataset)] = frozenset(base | every_attr)
        for array in arrays_of.get(dataset, []):
            meta = base | {("table", ("array", array)), ("table", ("schemas",))}
            reads[Read("meta", dataset, array)] = frozenset(meta)
            reads[Read("data", dataset, array)] = frozenset(
                meta | {("index", array)} | holds.get((dataset, array), set()))
            reads[Read("array_attrs", dataset, array)] = frozenset(
                base | {("table", ("array", array))} |
                {("table", s) for s in sids if s[0] == "array_attr" and s[1] == array})
    for array, names in holders.items():
        needs = set().union(*(n for r, n in reads.items()
                              if r.kind == "data" and r.array == array))
        reads[Read("stacked", None, array, names)] = frozenset(needs | every_name)
    return reads


def perform_all(root: str, reads, on_error=None) -> dict[Read, str]:
    """Every read's result (reads that raise CorruptionError are given to ``on_error``, or
    raise): the reads of each dataset on a handle of their own, through one view of it, the
    others on one more handle."""
    out = {}
    by_dataset: dict[str | None, list[Read]] = {}
    for read in reads:
        by_dataset.setdefault(read.dataset, []).append(read)
    for dataset, group in by_dataset.items():
        store = atlas.Atlas.open(root)
        view = None
        for read in group:
            try:
                if dataset is not None and view is None:
                    view = store.open_dataset(dataset)
                out[read] = perform(store, view, read)
            except atlas.CorruptionError as err:
                if on_error is None:
                    raise
                on_error(read, err)
    return out


def perform(store, ds, read: Read) -> str:
    """Do one read (``ds``: the view of its dataset); its result rendered as text (equal
    texts: equal results)."""
    if read.kind == "names":
        return repr(store.list_datasets())
    if read.kind == "stacked":
        return _model._values_text(store.read_array_across_stacked(read.array,
                                                                   list(read.names)))
    if read.kind == "arrays":
        return repr(ds.list_arrays())
    if read.kind == "attrs":
        return _attrs_text(ds.attributes())
    if read.kind == "meta":
        return _attrs_text(ds.array_meta(read.array)) + _attrs_text(ds.array_stats(read.array))
    if read.kind == "array_attrs":
        return _attrs_text(ds.array_attributes(read.array))
    values = ds.read_array(read.array)
    return f"{values.dtype.str} {values.shape} {_model._values_text(values)}"


def _attrs_text(values: dict | None) -> str:
    if values is None:
        return "None"
    return repr([(k, _model._attr_text(values[k])) for k in sorted(values)])


# -- damages ---------------------------------------------------------------------------------------


def draw_damage(rng: np.random.Generator, layout: Layout) -> tuple:
    """A truncation one time in five, else a flip in a region of a kind drawn evenly."""
    if rng.random() < 0.2:
        keys = sorted(layout.sizes)
        key = keys[int(rng.integers(0, len(keys)))]
        return ("truncate", key, int(rng.integers(0, layout.sizes[key])))
    kinds = layout.kinds()
    regions = layout.of_kind(kinds[int(rng.integers(0, len(kinds)))])
    region = regions[int(rng.integers(0, len(regions)))]
    offset = int(rng.integers(region.start, region.end))
    n = int(min(rng.integers(1, 9), layout.sizes[region.key] - offset))
    return ("flip", region.key, offset, bytes(int(x) for x in rng.integers(1, 256, n)))


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


def _file_kind(key: str) -> str:
    return "root" if key == ROOT else "part" if key.startswith("catalog/") else "segment"


def region_of(layout: Layout, damage: tuple) -> str:
    """Where a damage landed, for the figures."""
    if damage[0] == "truncate":
        return f"truncated {_file_kind(damage[1])}"
    return next(r.kind for r in layout.regions
                if r.key == damage[1] and r.start <= damage[2] < r.end)


def lost(layout: Layout, damage: tuple) -> set:
    """The resources a damage takes away."""
    key = damage[1]
    if damage[0] == "truncate":  # the size no longer matches the root: the file is unusable
        kind = _file_kind(key)
        if kind == "segment":  # its index (a linked file's is used by none) and every block
            return {r.needs for r in layout.regions if r.key == key and r.needs is not None}
        return {EVERYTHING if kind == "root" else FOOTERS}
    lo, hi = damage[2], damage[2] + len(damage[3])
    return {r.needs for r in layout.regions
            if r.key == key and r.start < hi and lo < r.end and r.needs is not None}


def affected_reads(layout: Layout, damage: tuple) -> set[Read]:
    gone = lost(layout, damage)
    return {read for read, needs in layout.reads.items() if needs & gone}


# -- checking -------------------------------------------------------------------------------------


def check_damage(layout: Layout, work: str, damage: tuple) -> str:
    """Copy the template to ``work``, damage it, check everything; returns an outcome label."""
    return f"{region_of(layout, damage)}: {_check(layout, work, damage)}"


def _check(layout: Layout, work: str, damage: tuple) -> str:
    if os.path.exists(work):
        shutil.rmtree(work)
    shutil.copytree(layout.root, work)
    damaged_path = os.path.join(atlas.Atlas.open(work).location, damage[1])
    early = atlas.Atlas.open(work)  # holds the root only: no other file is mapped yet
    apply_damage(work, damage)
    if damage[1] == ROOT:
        return _check_root_damage(early, work, damaged_path)
    affected = affected_reads(layout, damage)

    def raised(read, err):
        assert read in affected, f"{read} raised but does not use the damaged bytes: {err}"
        assert damaged_path in str(err), f"error does not name {damaged_path}: {err}"

    # a failed load must not poison later reads of the same handle: they are checked too
    for read, got in perform_all(work, layout.reads, raised).items():
        assert read not in affected, f"{read} read without error across damaged bytes {damage}"
        assert got == layout.clean[read], f"{read} returned wrong data after {damage}"
    report = atlas.Atlas.open(work).verify()
    assert any(damaged_path in p for p in report.problems), (damage, report.problems)
    others = [p for p in report.problems if damaged_path not in p]
    assert not others, f"verify blames undamaged files: {others}"
    return _check_compact(layout, work, affected, damage)


def _check_root_damage(early, work: str, damaged_path: str) -> str:
    try:
        atlas.Atlas.open(work)
    except (atlas.CorruptionError, atlas.FormatError) as err:
        assert damaged_path in str(err), f"error does not name the root: {err}"
        outcome = f"open raised {type(err).__name__}"
    else:
        raise AssertionError("a damaged root opened")
    problems = early.verify().problems
    assert any(damaged_path in p for p in problems), problems
    return outcome


def _check_compact(layout: Layout, work: str, affected: set, damage: tuple) -> str:
    """compact() may refuse (it checks everything it copies) or leave the damage where it was
    (a file needing no rewrite); either way no read may turn into wrong data."""
    store = atlas.Atlas.open(work)
    root = open(os.path.join(work, ROOT), "rb").read()
    try:
        store.compact(grace=0.0)
    except atlas.CorruptionError:
        assert open(os.path.join(work, ROOT), "rb").read() == root, "compact raised, committed"
        return "compact refused"  # the store is as it was: the reads above hold for it

    def raised(read, err):
        assert read in affected, f"{read} broken by compact after {damage}: {err}"

    for read, got in perform_all(work, layout.reads, raised).items():
        assert got == layout.clean[read], f"{read} wrong after compact after {damage}"
    return "compact ran"


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
