"""Forged stores: valid checksums, invalid content (item 10 of issue 17, and its forger).

A forger (``_forge.py``) rewrites a real store's root, catalog tables or segment indexes and
re-encodes them with correct checksums, so that only the content lies. Whatever it forges,
every call (``Atlas.open``, reads, ``verify()``, ``verify(repair=True)``, ``compact()``) raises
``CorruptionError`` or ``FormatError`` or returns exactly what the real store holds, never
another exception; ``verify()`` reports the forged store unsound; and nothing outside the store
changes. Hand-made forgeries cover the cases issue 17 lists (sections whose specs lie about
sizes, index rows pointing outside their blocks, tables naming schemas that do not exist,
negative slots, unsorted keys, values of unknown tags); hypothesis draws random mutations of
each field of a real root's JSON, of catalog table columns and of segment index columns."""

from __future__ import annotations

import datetime
import math
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas
from atlas.core import _maintain
from atlas.format import values as value_format

from . import _forge
from ._harness import record

SEEN: Counter = Counter()
REFUSED = (atlas.CorruptionError, atlas.FormatError)


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if SEEN:
        record("forged", checks=sum(SEEN.values()), outcomes=dict(sorted(SEEN.items())))


# -- the real store and what it holds ----------------------------------------------------------


def _build(root: Path) -> None:
    """Every kind of table, value and chunk layout, over three flushes (three parts, several
    segments per array name, a tombstone, a chunk rewritten), every file live: no merge runs
    (one would retire files, whose forgery no reader of the store sees)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_maintain, "FANOUT", 1000)
        _build_unmerged(root)


def _build_unmerged(root: Path) -> None:
    store = atlas.Atlas.create(root)
    for i, name in enumerate(("d0", "d1")):
        ds = store.create_dataset(name)
        ds.define_array("f", "float64", ["x"], [12], [4], float("nan"))
        ds.write_array("f", [0], np.arange(12.0) + i)
        ds.define_array("i", "int16", ["y", "x"], [3, 4], [2, 2], -1)
        ds.write_array("i", [1, 1], np.arange(4, dtype=np.int16).reshape(2, 2) * (i + 1))
        ds.define_array("u", "uint64", ["t"], [6], [4])  # no fill: written masks
        ds.write_array("u", [1], np.array([2**63 + i, 0, 7], np.uint64))
        ds.define_array("s", "string", ["n"], [3], [2], "?")
        ds.write_array("s", [0], np.array(["a", "bé", ""][: 3 - i], dtype=object))
        ds.define_array("t", "timestamp_ns", ["t"], [2])
        ds.write_array("t", [0], np.array(["2024-01-01", "2024-02-01T12"], "datetime64[ns]"))
        ds.define_array("z", "float64", [], [])
        ds.write_array("z", [], np.array(10.0 + i))
        ds.set_attribute("cycle", i)
        ds.set_attribute("name", f"float {i}")
        ds.set_attribute("raw", b"\x00\xff")
        ds.set_attribute("list", [1, "two", (3.5, None)])
        ds.set_attribute("f32", np.float32(1.5))
        ds.set_attribute("when", datetime.datetime(2024, 1, 1 + i))
        ds.set_attribute("ok", bool(i))
        ds.set_array_attribute("f", "units", "m")
        ds.set_array_attribute("f", "valid_max", np.float32(40))
    store.flush()
    store.open_dataset("d0").write_array("f", [4], np.full(4, -1.0))  # a chunk rewritten
    store.create_dataset("gone").set_attribute("k", 1)
    store.open_dataset("d1").set_attribute("cycle", 33)
    store.flush()
    store.delete_dataset("gone")
    store.open_dataset("d1").write_array("i", [0, 0], np.ones((1, 1), np.int16))
    store.flush()


def _canon(value: Any) -> Any:
    """A comparable form of anything the API returns (NaN equal to NaN, dtypes kept)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return ("objects", value.shape, [_canon(v) for v in value.reshape(-1).tolist()])
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, np.generic):
        return ("scalar", value.dtype.str, value.tobytes())
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, dict):
        return ("dict", [(_canon(k), _canon(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_canon(v) for v in value])
    return (type(value).__name__, value)


NAMES = ("d0", "d1")
ARRAYS = ("f", "i", "u", "s", "t", "z")


def _reads(store: atlas.Atlas, names=NAMES, arrays=ARRAYS
           ) -> list[tuple[str, Callable[[], Any]]]:
    """Every read of the real store's content, by name (``names`` hold every one of
    ``arrays``)."""
    out: list[tuple[str, Callable[[], Any]]] = [
        ("list_datasets", store.list_datasets), ("list_arrays", store.list_arrays),
        ("len", lambda: len(store)),
        # (columns of deleted datasets only, all missing, go with a compaction)
        ("catalog", lambda: sorted((k, list(v)) for k, v in store.catalog().dropna(
            axis=1, how="all").to_dict("list").items()))]
    for name in names:
        def ds(name=name):
            return store.open_dataset(name)
        out += [(f"{name} attributes", lambda ds=ds: ds().attributes()),
                (f"{name} arrays", lambda ds=ds: ds().list_arrays())]
        for array in arrays:
            out += [(f"{name}/{array}", lambda ds=ds, a=array: ds().read_array(a)),
                    (f"{name}/{array} meta", lambda ds=ds, a=array: ds().array_meta(a)),
                    (f"{name}/{array} stats", lambda ds=ds, a=array: ds().array_stats(a)),
                    (f"{name}/{array} attributes",
                     lambda ds=ds, a=array: ds().array_attributes(a))]
    for array in arrays:
        out.append((f"stacked {array}",
                    lambda a=array: store.read_array_across_stacked(a, list(names))))
    return out


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> tuple[Path, dict]:
    """The real store, built once, and what each read returns from it."""
    root = tmp_path_factory.mktemp("forged") / "template"
    _build(root)
    store = atlas.Atlas.open(root)
    assert store.verify().ok
    return root, {what: _canon(read()) for what, read in _reads(store)}


def _fresh_copy(template_root: Path, base: Path) -> Path:
    """A copy of the real store at ``base/store``, with a victim file and another store beside
    it, all fresh."""
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / "victim.txt").write_bytes(b"not the store's")
    shutil.copytree(template_root, base / "store")
    return base / "store"


def _outside(base: Path) -> dict:
    out = {}
    for path in base.rglob("*"):
        if "store" not in path.relative_to(base).parts[:1] and path.is_file():
            out[str(path)] = path.read_bytes()
    return out


def _call(what: str, call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", value) or ("refused", message); anything but CorruptionError/FormatError fails."""
    try:
        return "ok", call()
    except REFUSED as err:
        return "refused", str(err)
    except Exception as err:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"{what} raised {type(err).__name__}: {err}") from err


def check_forged(root: Path, expected: dict, what: str, before: atlas.Atlas, names=NAMES,
                 arrays=ARRAYS) -> Counter:
    """The contract for a forged store (see the module docstring), ``before`` a handle opened
    before the forgery; returns what happened."""
    base = root.parent
    outside = _outside(base)
    seen: Counter = Counter()
    status, report = _call(f"{what}: verify of an older handle", before.verify)
    assert not report.ok, f"{what}: verify() of an older handle calls the forged store sound"
    status, store = _call(f"{what}: open", lambda: atlas.Atlas.open(root))
    if status == "ok":
        for name, read in _reads(store, names, arrays):
            status, value = _call(f"{what}: {name}", read)
            if status == "ok":
                assert _canon(value) == expected[name], f"{what}: {name} read wrong data"
            seen[f"read {status}"] += 1
        status, report = _call(f"{what}: verify", store.verify)
        assert status == "ok", f"{what}: verify() raised {report}"
        assert not report.ok, f"{what}: verify() calls the forged store sound"
        seen["verify unsound"] += 1
        for name, call in (("verify(repair=True)", lambda: store.verify(repair=True)),
                           ("compact", lambda: store.compact(grace=0))):
            seen[f"{name} {_call(f'{what}: {name}', call)[0]}"] += 1
        # whatever compaction did, reads still refuse or return the real content
        status, again = _call(f"{what}: reopen", lambda: atlas.Atlas.open(root))
        if status == "ok":
            for name, read in _reads(again, names, arrays):
                status, value = _call(f"{what}: {name} after compact", read)
                if status == "ok":
                    assert _canon(value) == expected[name], \
                        f"{what}: {name} read wrong data after compact"
    else:
        seen["open refused"] += 1
    assert _outside(base) == outside, f"{what}: files outside the store changed"
    return seen


# -- hand-made forgeries --------------------------------------------------------------------------


def _seg(root, array="f", which=-1) -> str:
    return _forge.refs(root, array)[which][0]


def _lie_spec(column: int, by: int, decoded_too: bool):
    def lie(entry):
        entry[6][column][2] += by
        if decoded_too:
            entry[3] += by
    return lie


def _on(section_name):
    """A footer lie applied to one section only."""
    def wrap(lie):
        def apply(entry):
            if entry[0] == list(section_name):
                lie(entry)
        return apply
    return wrap


def _rekind(column: str, kind: str, convert):
    """A table edit storing ``column`` as ``kind`` (its values converted)."""
    def edit(s):
        for col in s.columns:
            if col[0] == column:
                col[1], col[2] = kind, convert(col[2])
    return edit


def _swap_segments(root: Path) -> None:
    """Copy array ``z``'s segment over one of ``f``'s, the root recording the copy's size: a
    sound segment under another key (as one copied from another store, or a retired one of
    the same size, would be)."""
    source, target = _forge.refs(root, "z")[-1][0], _forge.refs(root, "f")[-1][0]
    shutil.copyfile(_forge._path(root, source), _forge._path(root, target))
    _forge.set_ref(root, target, os.path.getsize(_forge._path(root, target)))


def _damage_a_version_record(root: Path) -> None:
    record = sorted((root / "versions").glob("*.root"))[0]
    data = bytearray(record.read_bytes())
    data[-1] ^= 0xFF
    record.write_bytes(bytes(data))


def _set(section_id, column, row, value):
    def edit(c):
        s = c.section(section_id)
        values = s.column(column)
        if isinstance(values, list):
            values = list(values)
        else:
            values = np.array(values).astype(np.int64)
        values[row] = value
        s.set(column, values)
    return edit


def _recode(row: int, change: Callable[[int], int]):
    """Set block ``row``'s codec byte to ``change`` of it (which must change it)."""
    def edit(c):
        codec = int(c.section(["blocks"]).column("codec")[row])
        assert change(codec) != codec, "the forgery must change the codec byte"
        _set(["blocks"], "codec", row, change(codec))(c)
    return edit


def _edit_root(root: Path, field: str, value: Any) -> None:
    doc = _forge.root_doc(root)
    doc[field] = value
    _forge.write_root(root, doc)


def _oldest_table(section_id, edit):
    """Edit a table in the oldest part holding it (the first flush's: every dataset)."""
    def forge(root):
        key = next(k for k, _s, _l in _forge.refs(root) if list(section_id) in [
            s.id for s in _forge.read_container(str(root / k)).sections])
        _forge.forge_file(root, key, lambda c: edit(c.section(section_id)))
    return forge


def _swap_keys(section):
    keys = np.array(section.column("key"))
    keys[[0, 1]] = keys[[1, 0]]
    section.set("key", keys)


HAND_MADE: dict[str, Callable[[Path], Any]] = {
    # sections whose specs lie about sizes
    "segment chunks: spec column larger, decoded too": lambda r: _forge.forge_file(
        r, _seg(r), lie=_on(["chunks"])(_lie_spec(3, 8, True))),
    "segment chunks: spec columns do not add up": lambda r: _forge.forge_file(
        r, _seg(r), lie=_on(["chunks"])(_lie_spec(0, 8, False))),
    "segment blocks: decoded length 2**35": lambda r: _forge.forge_file(
        r, _seg(r), lie=_on(["blocks"])(lambda e: (e.__setitem__(3, 2**35),
                                                   e[6][0].__setitem__(2, 2**35)))),
    "segment chunks: rows one more": lambda r: _forge.forge_file(
        r, _seg(r), lie=_on(["chunks"])(lambda e: e.__setitem__(4, e[4] + 1))),
    "segment chunks: section outside the file": lambda r: _forge.forge_file(
        r, _seg(r), lie=_on(["chunks"])(lambda e: e.__setitem__(1, e[1] + 10**6))),
    "segment: no partials section": lambda r: _forge.forge_file(
        r, _seg(r), lambda c: c.sections.remove(c.section(["partials"]))),
    "part datasets: spec says 2**40 bytes": lambda r: _forge.forge_file(
        r, _forge.part_with(r, ["datasets"]),
        lie=_on(["datasets"])(lambda e: (e.__setitem__(3, 2**40),
                                         e[6][2].__setitem__(2, 2**40)))),
    # a row count no column backs: a key column of evenly spaced values is stored in 16 bytes
    # whatever the count, and must not be expanded to a billion values before the check
    "part datasets: a billion rows more": lambda r: _forge.forge_file(
        r, _forge.refs(r)[0][0],
        lie=_on(["datasets"])(lambda e: e.__setitem__(4, e[4] + 10**9))),
    "segment chunks: a billion rows more": lambda r: _forge.forge_file(
        r, _seg(r), lie=_on(["chunks"])(lambda e: e.__setitem__(4, e[4] + 10**9))),
    "part: footer kind segment": lambda r: _forge.forge_file(
        r, _forge.refs(r)[-1][0], footer_lie=lambda doc: doc.update(kind="segment")),
    "part: unknown value format": lambda r: _forge.forge_file(
        r, _forge.refs(r)[-1][0], footer_lie=lambda doc: doc.update(values=2)),
    "part: unknown table": lambda r: _forge.forge_file(
        r, _forge.refs(r)[0][0], lie=_on(["schemas"])(lambda e: e.__setitem__(0, ["tables"]))),
    # segment indexes pointing outside their blocks
    "chunk offset past its block": lambda r: _forge.forge_file(
        r, _seg(r), _set(["chunks"], "offset", 0, 10**6)),
    "chunk length negative": lambda r: _forge.forge_file(
        r, _seg(r), _set(["chunks"], "length", 0, -8)),
    "chunk in block 7 of 1": lambda r: _forge.forge_file(
        r, _seg(r), _set(["chunks"], "block", 0, 7)),
    "chunk mask past its block": lambda r: _forge.forge_file(
        r, _seg(r, "u", 0), _set(["chunks"], "mask", 0, 1000)),
    "chunk length half its extent": lambda r: _forge.forge_file(
        r, _seg(r), _set(["chunks"], "length", 0, 16)),
    "string chunk one byte short": lambda r: _forge.forge_file(
        r, _seg(r, "s", 0), lambda c: _set(["chunks"], "length", 0, int(
            c.section(["chunks"]).column("length")[0]) - 1)(c)),
    "block outside the file": lambda r: _forge.forge_file(
        r, _seg(r), _set(["blocks"], "offset", 0, 10**9)),
    "block overlapping the magic": lambda r: _forge.forge_file(
        r, _seg(r), _set(["blocks"], "offset", 0, 0)),
    "block claiming 2**40 decoded": lambda r: _forge.forge_file(
        r, _seg(r), _set(["blocks"], "decoded", 0, 2**40)),
    "block of codec 9": lambda r: _forge.forge_file(
        r, _seg(r), _set(["blocks"], "codec", 0, 9)),
    "block as lz4": lambda r: _forge.forge_file(
        r, _seg(r), _set(["blocks"], "codec", 0, 2)),
    # a codec byte that gains, loses or changes shuffle bits would decode to other values:
    # the block's crc covers its codec byte (format version 6)
    "shuffled block read unshuffled": lambda r: _forge.forge_file(
        r, _seg(r), _recode(0, lambda codec: codec & 0x0F)),
    "block shuffled by 4 not 8": lambda r: _forge.forge_file(
        r, _seg(r), _recode(0, lambda codec: (codec & 0x0F) | 0x20)),
    "string block read shuffled": lambda r: _forge.forge_file(
        r, _seg(r, "s", 0), _recode(0, lambda codec: codec | 0x20)),
    "segment footer without codec_in_crc": lambda r: _forge.forge_file(
        r, _seg(r), footer_lie=lambda doc: doc.pop("codec_in_crc")),
    "segment footer codec_in_crc 'yes'": lambda r: _forge.forge_file(
        r, _seg(r), footer_lie=lambda doc: doc.update(codec_in_crc="yes")),
    "partial of row 99": lambda r: _forge.forge_file(
        r, _seg(r), _set(["partials"], "row", 0, 99)),
    "chunk of slot -1": lambda r: _forge.forge_file(
        r, _seg(r), _set(["chunks"], "slot", 0, -1)),
    "chunk number -1": lambda r: _forge.forge_file(
        r, _seg(r), _set(["chunks"], "chunk", 0, -1)),
    "chunk of a slot the catalog never handed out": lambda r: _forge.forge_file(
        r, _seg(r), _set(["chunks"], "slot", -1, 2**40)),
    "segment copied over another of the same size": _swap_segments,
    "segment footer naming another key": lambda r: _forge.forge_file(
        r, _seg(r), footer_lie=lambda doc: doc.update(key="segments/elsewhere.seg")),
    "version record damaged": _damage_a_version_record,
    "root time past year 9999": lambda r: _edit_root(r, "time", 2.0**40),
    # catalog columns stored as another kind than their table's (decoded by the kind claimed)
    "datasets dead column of texts": lambda r: _forge.forge_table(
        r, ["datasets"], _rekind("dead", "txt", lambda v: [str(int(x)) for x in v])),
    "array valid column of floats": lambda r: _forge.forge_table(
        r, ["array", "f"], _rekind("valid", "f8", lambda v: np.asarray(v, np.int64))),
    "attribute num column of ints": lambda r: _forge.forge_table(
        r, ["attr", "cycle"], _rekind("num", "i8", lambda v: np.asarray(v, np.int64))),
    "names filter without its bits": lambda r: _forge.forge_file(
        r, _forge.part_with(r, ["names_bloom"]),
        lambda c: c.section(["names_bloom"]).columns[0].__setitem__(0, "x")),
    # catalog tables naming schemas that do not exist, negative slots, unsorted keys
    "array row naming schema 99": lambda r: _forge.forge_table(
        r, ["array", "f"], lambda s: s.set("schema", np.full(s.rows, 99))),
    "array row naming schema -1": lambda r: _forge.forge_table(
        r, ["array", "i"], lambda s: s.set("schema", np.full(s.rows, -1))),
    "array row of slot -1": lambda r: _forge.forge_table(
        r, ["array", "f"], lambda s: s.set("slot", np.full(s.rows, -1))),
    "datasets keys unsorted": _oldest_table(["datasets"], _swap_keys),
    "array keys unsorted": _oldest_table(["array", "z"], _swap_keys),
    "attr key negative": lambda r: _forge.forge_table(
        r, ["attr", "cycle"], lambda s: s.set("key", np.array(s.column("key")) - 100)),
    "schema 0 missing": lambda r: _forge.forge_table(
        r, ["schemas"], lambda s: s.set("key", np.array(s.column("key")) + 1)),
    "schema of an unknown dtype": lambda r: _forge.forge_table(
        r, ["schemas"], lambda s: s.set("json", ['["complex64",["x"],[12],[4],null]']
                                        * s.rows)),
    "schema that is not JSON": lambda r: _forge.forge_table(
        r, ["schemas"], lambda s: s.set("json", ["[" * 5] * s.rows)),
    "array table without slot": lambda r: _forge.forge_table(
        r, ["array", "f"], lambda s: s.columns.remove(next(c for c in s.columns
                                                           if c[0] == "slot"))),
    # root lists of another type (a string iterates as no entries)
    "root retired is a string": lambda r: _edit_root(r, "retired", ""),
    "root parts is a string": lambda r: _edit_root(r, "parts", ""),
    "root segments of an array is a dict": lambda r: _edit_root(
        r, "segments", {name: {} for name in _forge.root_doc(r)["segments"]}),
    # values with unknown tags
    "attribute of tag 99": lambda r: _forge.forge_table(
        r, ["attr", "cycle"], lambda s: s.set("tag", np.full(s.rows, 99))),
    "attribute of tag 0": lambda r: _forge.forge_table(
        r, ["attr", "ok"], lambda s: s.set("tag", np.zeros(s.rows))),
    "array attribute of tag 200": lambda r: _forge.forge_table(
        r, ["array_attr", "f", "units"], lambda s: s.set("tag", np.full(s.rows, 200))),
    "string attribute not UTF-8": lambda r: _forge.forge_table(
        r, ["attr", "name"], lambda s: s.set("data", [b"\xff\xfe"] * s.rows)),
    "structured attribute not JSON": lambda r: _forge.forge_table(
        r, ["attr", "list"], lambda s: s.set("data", [b"[1,"] * s.rows)),
    "structured attribute of unknown kind": lambda r: _forge.forge_table(
        r, ["attr", "list"], lambda s: s.set("data", [b'{"~":"bomb"}'] * s.rows)),
}


@pytest.mark.parametrize("what", sorted(HAND_MADE))
def test_hand_made_forgeries_are_refused_or_read_right_and_verify_reports_them(
        template, tmp_path, what):
    root = _fresh_copy(template[0], tmp_path / "x")
    before = atlas.Atlas.open(root)
    HAND_MADE[what](root)
    SEEN.update(check_forged(root, template[1], what, before))
    SEEN["hand-made forgery"] += 1


# -- version 1: stores written before format version 2 still open -------------------------------

V1_STORE = Path(__file__).parent.parent / "data" / "v1_store"
V1_NAMES = ("prof_0", "prof_1", "prof_3", "prof_4", "prof_5")
V1_ARRAYS = ("temp", "lat", "grid", "nofill", "name", "when", "u")


def _v1_array(field: str, value, array: str = "grid", dataset: str = "prof_1"):
    return lambda r: _forge.forge_v1(r, lambda d: d["datasets"][dataset]["arrays"][array]
                                     .__setitem__(field, value))


def _v1_attr(value, key: str = "cycle", dataset: str = "prof_1"):
    return lambda r: _forge.forge_v1(r, lambda d: d["datasets"][dataset]["attrs"]
                                     .__setitem__(key, value))


def _v1_record(stored: bytes, decoded: int, array: str = "temp", dataset: str = "prof_4"):
    return lambda r: _forge.forge_v1_chunk(r, dataset, array, stored, decoded, 1,
                                           replace=False)


V1_HAND_MADE: dict[str, Callable[[Path], Any]] = {
    "schema index -1": _v1_array("schema", -1),
    "schema index 99": _v1_array("schema", 99),
    "schema index a string": _v1_array("schema", "0"),
    "slot -1": _v1_array("slot", -1),
    "no slot": lambda r: _forge.forge_v1(
        r, lambda d: d["datasets"]["prof_1"]["arrays"]["grid"].pop("slot")),
    "stats of the wrong shape": _v1_array("stats", [1, 2]),
    "attribute of an unknown type": _v1_attr(["complex", 1]),
    "int attribute that is text": _v1_attr(["int64", "x"]),
    "attribute without a value": _v1_attr(["int64"]),
    "numpy attribute of an unknown dtype": _v1_attr(["np:nonsense", 1]),
    "dataset record without arrays": lambda r: _forge.forge_v1(
        r, lambda d: d["datasets"]["prof_1"].pop("arrays")),
    "schema of an unknown dtype": lambda r: _forge.forge_v1(
        r, lambda d: d["schemas"][0].__setitem__(0, "complex64")),
    "schema of mismatched ranks": lambda r: _forge.forge_v1(
        r, lambda d: d["schemas"][0].__setitem__(2, [1, 2, 3])),
    "chunk record of 8 bytes for 10 floats": _v1_record(
        _forge.frame(bytes(8)), 8),
    "chunk record that is not zstd": _v1_record(b"\x00" * 40, 40),
}


@pytest.fixture(scope="session")
def v1_template(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("forged-v1") / "template"
    shutil.copytree(V1_STORE, root)
    store = atlas.Atlas.open(root)
    assert store.verify().ok and store.format_version == 1
    return root, {what: _canon(read()) for what, read in _reads(store, V1_NAMES, V1_ARRAYS)}


@pytest.mark.parametrize("what", sorted(V1_HAND_MADE))
def test_forged_version_1_stores_are_refused_or_read_right_and_verify_reports_them(
        v1_template, tmp_path, what):
    root = _fresh_copy(v1_template[0], tmp_path / "x")
    before = atlas.Atlas.open(root)
    V1_HAND_MADE[what](root)
    SEEN.update(check_forged(root, v1_template[1], f"version 1: {what}", before, V1_NAMES,
                             V1_ARRAYS))
    SEEN["version-1 forgery"] += 1


# -- the hypothesis forger ----------------------------------------------------------------------
#
# Each strategy draws one mutation that makes the content invalid by the format's own rules
# (docs/format.md), never another valid store: a value of the wrong type or out of its range, a
# key that is not one of the store's files, a counter below what the catalog already uses, a
# file listed twice, a section whose footer entry lies, an index row outside its block, a
# table whose keys are out of order, a value of a tag that does not exist. (Rewriting a value
# into another valid one, say a chunk number into another chunk's, forges a different valid
# store, which no checksum or check can tell; the forger leaves those alone.)

NOT_INT = st.one_of(st.floats(), st.text(max_size=4), st.none(), st.booleans(),
                    st.lists(st.integers(), max_size=2), st.just({"n": 1}))
NOT_NUMBER = st.one_of(st.text(max_size=6), st.none(), st.booleans(),
                       st.lists(st.integers(), max_size=2), st.just({"n": 1}))
NOT_STR = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=2),
                                                                       max_size=2))
BAD_KEYS = st.one_of(
    st.sampled_from(["../victim.txt", "segments/../../victim.txt", "/etc/passwd",
                     "manifest.atlas", ".atlas.lock", "segments", "catalog/", "a//b",
                     "x" * 300]),
    st.text(max_size=12), NOT_STR)
RANGES = {"generation": (0, None), "level": (-131072, None), "block_size": (1, None),
          "did": (0, None), "slot": (0, None), "schema": (0, None), "seq": (0, None)}


def _out_of_range(low: int) -> st.SearchStrategy:
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=2**62),
                     NOT_INT)


def _entries(doc: dict) -> list[tuple[str, list]]:
    """("parts" | "segments/<array>" | "retired", entry) of every file the root lists."""
    out = [("parts", e) for e in doc["parts"]]
    out += [(f"segments/{a}", e) for a, refs in doc["segments"].items() for e in refs]
    return out + [("retired", e) for e in doc["retired"]]


OPTIONAL_ROOT_FIELDS = {"linked", "changes", "retention", "created", "delta", "retired_lists"}


@st.composite
def root_mutations(draw, doc: dict) -> str:
    """Mutate the root document ``doc`` in place; returns what was done."""
    kind = draw(st.sampled_from(["int field", "counter below use", "codec", "format", "version",
                                 "commit", "parent", "message", "time", "missing field",
                                 "list shape", "entry shape", "key", "size", "level",
                                 "retired key", "retired time", "retire a live file",
                                 "list a file twice"]))
    if kind == "int field":
        name = draw(st.sampled_from(sorted(RANGES)))
        holder = doc["next"] if name in doc["next"] else doc
        holder[name] = draw(_out_of_range(RANGES[name][0]))
        return f"{name} = {holder[name]!r}"
    if kind == "counter below use":
        name = draw(st.sampled_from(["did", "slot", "schema", "seq"]))
        doc["next"][name] = draw(st.integers(0, doc["next"][name] - 1))
        return f"next {name} = {doc['next'][name]}"
    if kind in ("codec", "format"):
        doc[kind] = draw(st.one_of(st.text(max_size=6), NOT_STR).filter(
            lambda v: v not in ("zstd", "lz4", "none", "atlas")))
        return f"{kind} = {doc[kind]!r}"
    if kind == "version":
        version = doc["version"]
        doc["version"] = draw(st.one_of(st.integers(), NOT_INT).filter(
            lambda v: not isinstance(v, (int, float)) or isinstance(v, bool) or v != version))
        return f"version = {doc['version']!r}"
    if kind in ("commit", "parent", "message"):
        doc[kind] = draw(st.one_of(st.integers(), st.floats(), st.booleans(), st.just([])))
        return f"{kind} = {doc[kind]!r}"
    if kind == "time":
        doc["time"] = draw(NOT_NUMBER)
        return f"time = {doc['time']!r}"
    if kind == "missing field":
        # fields a root may leave out (what older writers did not write) are not damage
        name = draw(st.sampled_from([*sorted(set(doc) - OPTIONAL_ROOT_FIELDS),
                                     *(f"next/{n}" for n in doc["next"])]))
        if name.startswith("next/"):
            del doc["next"][name[5:]]
        else:
            del doc[name]
        return f"no {name}"
    if kind == "list shape":
        name = draw(st.sampled_from(["parts", "segments", "retired", "next"]))
        doc[name] = draw(st.one_of(st.integers(), st.text(max_size=3), st.none()))
        return f"{name} = {doc[name]!r}"
    if kind == "retired key":
        doc["retired"].append([draw(BAD_KEYS), 0.0])
        return f"retired {doc['retired'][-1][0]!r}"
    if kind == "retired time":
        key = "segments/00000001-" + uuid.uuid4().hex + ".seg"  # a file that is not there
        doc["retired"].append([key, draw(NOT_NUMBER)])
        return f"retired since {doc['retired'][-1][1]!r}"
    if kind == "retire a live file":
        key = draw(st.sampled_from([e[0] for _w, e in _entries(doc)]))
        doc["retired"].append([key, draw(st.sampled_from([0.0, 1e9, 4e9]))])
        return f"retired live {key}"
    where, entry = draw(st.sampled_from(_entries(doc)))
    if kind == "entry shape":
        if draw(st.booleans()):
            entry.append(draw(st.integers()))
        else:
            del entry[draw(st.integers(0, len(entry) - 1))]
        return f"{where} entry {entry!r}"
    if kind == "key":
        other_kind = [e[0] for w, e in _entries(doc) if w[:4] != where[:4]]
        missing = ("segments/00000001-" + uuid.uuid4().hex + ".seg" if where != "parts" else
                   "catalog/00000001-" + uuid.uuid4().hex + ".cat")
        v1 = "segments/a/00000001-" + "e" * 32 + ".seg"  # only an upgrade's retired list has
        entry[0] = draw(st.one_of(BAD_KEYS, st.sampled_from([*other_kind, v1]), st.just(missing)))
        return f"{where} key {entry[0]!r}"
    if kind == "size":
        real = entry[1]
        entry[1] = draw(st.one_of(st.integers().filter(lambda v: v != real), NOT_INT))
        return f"{where} size {entry[1]!r} (real {real})"
    if kind == "level":
        entry[2] = draw(st.one_of(st.integers(max_value=-1), NOT_INT))
        return f"{where} level {entry[2]!r}"
    if where == "parts":
        doc["parts"].append(list(entry))
    else:
        doc["segments"][where.split("/", 1)[1]].append(list(entry))
    return f"{where} lists {entry[0]} twice"


VALUE_TAGS = {*range(1, 8), *range(16, 28)}
INT_TAGS = {17: np.int8, 18: np.int16, 19: np.int32, 21: np.uint8, 22: np.uint16,
            23: np.uint32}
BAD_SCHEMAS = st.one_of(st.sampled_from([
    '["complex64",["x"],[4],[2],null]', '["int8",["x"],[4],[2,2],null]',
    '["int8",["x"],[-4],[2],null]', '["int8",["x"],[4],[0],null]', '["int8",[1],[4],[2],null]',
    '["int8",["x"],[4],[2],[1]]', '["int8",["x"],[4],[2]]', "[]", "{}", "null", "[[[[",
    '{"~":"nope"}', '["int8",["x","y"],[4],[2],null]']), st.text(max_size=8))


def _other_int(real: int, low: int | None = None, high: int | None = None):
    return st.integers(low, high).filter(lambda v: v != real)


def _section_lie(data, is_index: bool) -> tuple[Callable[[list], Any], str]:
    """A lie in a section's footer entry: [id, offset, stored, decoded, rows, crc, spec]."""
    field = data.draw(st.sampled_from(["id", "offset", "stored", "decoded", "rows", "crc",
                                       "spec size", "spec kind"]), label="footer field")
    if field == "id":
        new = data.draw(st.sampled_from([["tables"], ["array"], ["attr", ""], ["array", 5],
                                         [], ["blocks", "x"], ["array_attr", "f"]]))

        def lie(entry):
            entry[0] = new
        return lie, f"section id {new}"
    if field.startswith("spec"):
        column = data.draw(st.integers(0, 100))
        if field == "spec kind":
            kind = data.draw(st.one_of(st.text(max_size=3), st.integers()).filter(
                lambda k: k not in ("i8", "i8d", "i8s", "f8", "i4", "u4", "u1", "txt", "bin")))
        else:
            by = data.draw(st.integers(-(2**40), 2**40).filter(bool))
            too = data.draw(st.booleans())

        def lie(entry):
            spec = entry[6][column % len(entry[6])]
            if field == "spec kind":
                spec[1] = kind
            else:
                spec[2] += by
                if too:
                    entry[3] += by
        return lie, f"{field} of column {column}"
    position = {"offset": 1, "stored": 2, "decoded": 3, "rows": 4, "crc": 5}[field]
    shift = data.draw(st.integers(-(2**62), 2**62).filter(bool), label=field)

    def lie(entry):
        entry[position] += shift
    return lie, f"{field} {shift:+d}"


def _column(section, name) -> np.ndarray:
    return np.array(section.column(name)).astype(np.int64)


def mutate_table(data, root: Path) -> str:
    """Forge one catalog table of one part (or its footer entry); returns what was done."""
    key = data.draw(st.sampled_from([k for k, _s, _l in _forge.refs(root)]), label="part")
    c = _forge.read_container(str(root / key))
    section = data.draw(st.sampled_from(c.sections), label="table")
    sid = section.id
    table = sid[0]
    choices = ["footer"]
    if table != "names_bloom":
        choices += ["key negative", "missing column"] + (["key order"] if section.rows > 1
                                                         else [])
    if table == "array":
        choices += ["slot negative", "schema out of range", "count negative"]
    if table in ("attr", "array_attr"):
        choices += ["tag unknown", "value undecodable"]
    if table == "schemas":
        choices += ["schema invalid"]
    what = data.draw(st.sampled_from(choices), label="mutation")
    row = data.draw(st.integers(0, max(0, section.rows - 1)), label="row")
    if what == "footer":
        lie, said = _section_lie(data, False)
        _forge.forge_file(root, key, lie=lambda e: lie(e) if e[0] == sid else None)
        return f"{key} {sid}: {said}"
    if what == "key negative":
        keys = _column(section, "key")
        keys[row] = data.draw(st.integers(-(2**62), -1))
        section.set("key", keys)
    elif what == "key order":
        keys = _column(section, "key")
        other = data.draw(st.integers(0, section.rows - 1).filter(
            lambda i: i != row and keys[i] != keys[row] or i == row - 1))
        if data.draw(st.booleans()):
            keys[[row, other]] = keys[[other, row]]
        else:
            keys[row] = keys[other]
        section.set("key", keys)
    elif what == "missing column":
        required = [col for col in section.columns if col[0] not in ("smin", "smax")]
        section.columns.remove(data.draw(st.sampled_from(required)))
    elif what in ("slot negative", "count negative"):
        name = "slot" if what == "slot negative" else data.draw(st.sampled_from(["nulls",
                                                                                 "valid"]))
        values = _column(section, name)
        values[row] = data.draw(st.integers(-(2**62), -1))
        section.set(name, values)
    elif what == "schema out of range":
        values = _column(section, "schema")
        n = _forge.root_doc(root)["next"]["schema"]
        values[row] = data.draw(st.one_of(st.integers(-(2**62), -1), st.integers(n, 2**62)))
        section.set("schema", values)
    elif what == "tag unknown":
        tags = _column(section, "tag")
        tags[row] = data.draw(st.integers(0, 255).filter(lambda t: t not in VALUE_TAGS))
        section.set("tag", tags)
    elif what == "value undecodable":
        tags, nums, blobs = _column(section, "tag"), _column(section, "num"), \
            list(section.column("data"))
        tag = int(tags[row])
        if tag in INT_TAGS:
            info = np.iinfo(INT_TAGS[tag])
            nums[row] = data.draw(st.one_of(st.integers(-(2**63), int(info.min) - 1),
                                            st.integers(int(info.max) + 1, 2**63 - 1)))
            section.set("num", nums)
        elif tag == value_format.STRING:
            blobs[row] = data.draw(st.binary(min_size=1, max_size=6).filter(_not_utf8))
            section.set("data", blobs)
        elif tag == value_format.STRUCT:
            blobs[row] = data.draw(st.one_of(st.binary(max_size=6), st.sampled_from(
                [b'{"~":"nope"}', b'{"~":"tuple"}', b'{"~":"bytes","b64":"@"}', b"[1,",
                 b'{"~":"ndarray","dtype":"zz","shape":[1],"data":[1]}'])).filter(
                     _not_a_value))
            section.set("data", blobs)
        else:  # a tag whose value cannot be undecodable: give it an unknown tag instead
            tags[row] = 99
            section.set("tag", tags)
    elif what == "schema invalid":
        texts = list(section.column("json"))
        texts[row] = data.draw(BAD_SCHEMAS.filter(_not_a_schema))
        section.set("json", texts)
    _forge.write_container(str(root / key), c)
    _forge.set_ref(root, key, os.path.getsize(root / key))
    return f"{key} {sid} row {row}: {what}"


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _not_a_value(raw: bytes) -> bool:
    try:
        value_format.decode(value_format.STRUCT, 0, raw)
    except Exception:  # noqa: BLE001 - anything: not a value
        return True
    return False


def _not_a_schema(text: str) -> bool:
    from atlas.format.schema import Schema

    try:
        Schema.from_value(value_format.loads(text))
    except Exception:  # noqa: BLE001 - anything: not a schema
        return True
    return False


def _reached_rows(root: Path, array: str, key: str) -> list[int]:
    """Rows of the newest segment ``key`` of ``array`` that reads use: the last of each
    (slot, chunk) in it (a later row wins, and the newest segment wins over older ones)."""
    chunks = _forge.read_container(str(root / key)).section(["chunks"])
    pairs = list(zip(_column(chunks, "slot").tolist(), _column(chunks, "chunk").tolist()))
    last = {pair: i for i, pair in enumerate(pairs)}
    return sorted(last.values())


def mutate_index(data, root: Path) -> str:
    """Forge one segment index section (or its footer entry); returns what was done."""
    array = data.draw(st.sampled_from(ARRAYS), label="array")
    refs = _forge.refs(root, array)
    which = data.draw(st.integers(0, len(refs) - 1), label="segment")
    key = refs[which][0]
    c = _forge.read_container(str(root / key))
    name = data.draw(st.sampled_from(["blocks", "chunks", "partials"]), label="section")
    section = c.section([name])
    if section.rows == 0 or data.draw(st.booleans(), label="footer lie"):
        lie, said = _section_lie(data, True)
        _forge.forge_file(root, key, lie=lambda e: lie(e) if e[0] == [name] else None)
        return f"{array} {key} {name}: {said}"
    row = data.draw(st.integers(0, section.rows - 1), label="row")
    blocks = c.section(["blocks"])
    if name == "blocks":
        column = data.draw(st.sampled_from(["offset", "stored", "decoded", "codec", "crc"]))
        values = _column(section, column)
        real = int(values[row])
        values[row] = data.draw({"codec": _other_int(real, 0, 255),
                                 "crc": _other_int(real, 0, 2**32 - 1)}.get(
                                     column, _other_int(real, -(2**62), 2**62)))
    elif name == "partials":
        column = data.draw(st.sampled_from(["row", "nulls", "valid"]))
        values = _column(section, column)
        values[row] = data.draw(st.integers(-(2**62), -1) if column != "row" else
                                st.one_of(st.integers(-(2**62), -1),
                                          st.integers(c.section(["chunks"]).rows, 2**62)))
    else:
        column = data.draw(st.sampled_from(["slot", "chunk", "block", "offset", "length",
                                            "mask"]))
        values = _column(section, column)
        block = int(_column(section, "block")[row])
        room = int(_column(blocks, "decoded")[block]) if 0 <= block < blocks.rows else 0
        used = int(_column(section, "offset")[row] + _column(section, "length")[row]
                   + _column(section, "mask")[row])
        if column in ("slot", "chunk"):
            values[row] = data.draw(st.integers(-(2**62), -1))
        elif column == "block":
            values[row] = data.draw(st.one_of(st.integers(-(2**62), -1),
                                              st.integers(blocks.rows, 2**62)))
        elif column == "length" and which == len(refs) - 1 and row in _reached_rows(
                root, array, key):
            real = int(values[row])  # a row reads use: any other length is refused
            values[row] = data.draw(_other_int(real, -(2**62), 2**62))
        else:  # past the end of its block, or negative
            values[row] = data.draw(st.one_of(
                st.integers(-(2**62), -1),
                st.integers(int(values[row]) + room - used + 1, 2**62)))
    section.set(column, values)
    _forge.write_container(str(root / key), c)
    _forge.set_ref(root, key, os.path.getsize(root / key))
    return f"{array} {key} {name}.{column} row {row}"


def _forge_and_check(template, base: Path, forge: Callable[[Path], str]) -> None:
    root = _fresh_copy(template[0], base)
    before = atlas.Atlas.open(root)
    what = forge(root)
    SEEN.update(check_forged(root, template[1], what, before))
    SEEN["random forgery"] += 1
    shutil.rmtree(base)


def _random_root(data, root: Path) -> str:
    doc = _forge.root_doc(root)
    what = data.draw(root_mutations(doc), label="root mutation")
    _forge.write_root(root, doc)
    return f"root: {what}"


FORGERS = {"root": _random_root, "table": mutate_table, "index": mutate_index}


@pytest.mark.parametrize("target", sorted(FORGERS))
@given(data=st.data())
def test_random_forgeries_are_refused_or_read_right_and_verify_reports_them(
        template, tmp_path_factory, target, data):
    base = tmp_path_factory.getbasetemp() / "forged" / uuid.uuid4().hex
    _forge_and_check(template, base, lambda root: FORGERS[target](data, root))


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(FORGERS))
@settings(max_examples=max(500, settings.default.max_examples // 2))
@given(data=st.data())
def test_many_random_forgeries_are_refused_or_read_right_and_verify_reports_them(
        template, tmp_path_factory, target, data):
    base = tmp_path_factory.getbasetemp() / "forged" / uuid.uuid4().hex
    _forge_and_check(template, base, lambda root: FORGERS[target](data, root))
