"""On-disk formats (version 2): the root, values, column sections, segments and catalog parts
encode, decode, and turn damage into CorruptionError / FormatError."""

from __future__ import annotations

import datetime
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

import atlas
from atlas import codecs
from atlas.format import columns, keys, values
from atlas.format import root as root_format
from atlas.format.catalog import MAGIC as PART_MAGIC
from atlas.format.catalog import read_table, write_part
from atlas.format.container import FOOTER_PROBE, parse_footer
from atlas.format.root import FileRef, Root
from atlas.format.segment import MAGIC as SEGMENT_MAGIC
from atlas.format.segment import SegmentWriter, parse_index
from atlas.format.tables import Table, merge

SEG = "segments/00000003-" + "a" * 32 + ".seg"
PART = "catalog/00000003-" + "b" * 32 + ".cat"


def _root() -> Root:
    return Root(generation=3, codec="lz4", level=0, block_size=1 << 16, message="hello",
                next_did=5, next_slot=9, next_schema=2, next_seq=11,
                parts=[FileRef(PART, 100, 0)], segments={"temp": [FileRef(SEG, 2000, 1)]},
                retired=[(SEG.replace("a", "c"), 1795000000.5, 3)],
                changes={"added": 2, "changed": 1, "deleted": 0}, retention=(3600.0, 4))


def test_root_round_trips_through_encode_and_decode():
    root = _root()
    back = root_format.decode(root.encode(), "here")
    assert back == root


def test_root_starts_with_the_magic_and_format_version_2():
    data = _root().encode()
    assert data[:8] == root_format.MAGIC == b"ATLMAN01"
    assert struct.unpack_from("<I", data, 8)[0] == 2
    assert root_format.read_header(data, "here") == 2


@pytest.mark.parametrize("data", [b"", b"garbage", b"ATLMAN0", b"{}" * 20])
def test_bytes_that_are_not_a_root_raise_format_error(data):
    with pytest.raises(atlas.FormatError, match="here"):
        root_format.read_header(data, "here")


@pytest.mark.parametrize("version", [0, root_format.VERSION + 1, 99])
def test_unknown_format_versions_raise_format_error(version):
    data = bytearray(_root().encode())
    struct.pack_into("<I", data, 8, version)
    with pytest.raises(atlas.FormatError, match=str(version)):
        root_format.read_header(bytes(data), "here")


def test_every_flipped_payload_byte_of_a_root_raises_corruption_error():
    data = _root().encode()
    for i in range(12, len(data)):  # checksum, length and payload
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(atlas.CorruptionError, match="here"):
            root_format.decode(bytes(damaged), "here")
    with pytest.raises(atlas.CorruptionError):
        root_format.decode(data[:-1], "here")


def _forged(doc_change) -> bytes:
    """A root whose JSON was edited and whose checksum was recomputed: only the content check
    can catch it."""
    doc = _root().to_json()
    doc_change(doc)
    payload = zstandard.ZstdCompressor().compress(json.dumps(doc).encode())
    return root_format.HEADER.pack(root_format.MAGIC, 2, codecs.checksum(payload),
                                   len(payload)) + payload


@pytest.mark.parametrize("change", [
    lambda d: d["parts"].append(["../victim.txt", 1, 0]),
    lambda d: d["segments"]["temp"].append(["/etc/passwd", 1, 0]),
    lambda d: d["segments"]["temp"].append(["segments/../../x/00000001-" + "a" * 32 + ".seg", 1,
                                            0]),
    lambda d: d["retired"].append(["../other_store/segments/x.seg", 1.0]),
    lambda d: d.update(generation=-1),
    lambda d: d.update(generation="7"),
    lambda d: d["next"].update(slot=None),
    lambda d: d.pop("parts"),
    lambda d: d.update(codec="brotli"),
    lambda d: d["parts"].append([PART, -5, 0]),
    lambda d: d.update(version=1),
])
def test_forged_roots_with_valid_checksums_raise_corruption_error(change):
    with pytest.raises(atlas.CorruptionError, match="here"):
        root_format.decode(_forged(change), "here")


def test_the_key_grammar_admits_only_the_keys_atlas_writes():
    assert keys.is_segment_key(keys.new_segment_key(12)) and keys.is_part_key(
        keys.new_part_key(12))
    for bad in ("../x.seg", "segments/../x.seg", "/segments/00000001-" + "a" * 32 + ".seg",
                "segments/00000001-" + "A" * 32 + ".seg", "segments\\00000001-" + "a" * 32,
                "catalog/x.cat", "", None, 7):
        assert not keys.is_data_key(bad), bad
    assert keys.is_segment_key("segments/temp%20x/00000001-" + "a" * 32 + ".seg", version=1)
    assert not keys.is_segment_key("segments/../00000001-" + "a" * 32 + ".seg", version=1)


# -- values -------------------------------------------------------------------------------------

ROUND_TRIPS = [
    True, False, 0, -(2**63), 2**63 - 1, 1.5, float("inf"), "", "naïve ✓", "a\x00b", b"",
    b"\x00\xff", np.datetime64("2024-01-02T03:04:05.123456789", "ns"),
    np.int8(-3), np.uint64(2**64 - 1), np.float32(1.25), np.float16(0.5), np.bool_(True),
    [1, 2.5, "x", None], (1, (2, 3)), {"a": [1, {"b": None}]}, {1: "one", (2, 3): "pair"},
    np.array([[1, 2], [3, 4]], np.int16), np.array(["a", "bé"]), np.array([b"x", b"\x00"]),
    np.array([1.5, np.nan, -np.inf], np.float32), np.array(["2024-01-01"], "M8[D]"),
    np.array([1 + 2j]), {"set": {3, 1}}, complex(1, -2), datetime.date(2024, 2, 29),
    datetime.timedelta(days=2, microseconds=5), np.dtype("<f4"), np.str_("numpy str"),
    np.bytes_(b"nb"), [float("nan")],
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_values_come_back_with_their_type_and_value(value):
    back = values.decode(*values.encode(value))
    assert type(back) is type(value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back, value)
    elif isinstance(value, list) and value and isinstance(value[0], float):
        assert np.isnan(back[0])
    elif isinstance(value, float) and value != value:
        assert back != back
    else:
        assert back == value


@pytest.mark.parametrize("value", [np.bytes_(b"\x00"), np.bytes_(b""), np.bytes_(b"a\x00\x00"),
                                   np.str_("a\x00"), np.str_(""), np.str_("\x00")])
def test_numpy_string_scalars_keep_their_trailing_nuls_and_width(value):
    """np.bytes_(b'\\x00') (a char variable's _FillValue) came back as b'' of width 0."""
    back = values.decode(*values.encode(value))
    assert type(back) is type(value) and back.dtype == value.dtype
    assert len(back) == len(value) and bytes(np.asarray(back).data) == bytes(
        np.asarray(value).data)


def test_nan_comes_back_as_nan():
    assert np.isnan(values.decode(*values.encode(float("nan"))))
    assert np.isnan(values.decode(*values.encode(np.float32("nan"))))


@pytest.mark.parametrize(("value", "dtype", "error"), [
    (None, None, TypeError), (object(), None, TypeError), 
    (300, "int8", OverflowError), (-1, "uint8", OverflowError), (1.5, "int32", TypeError),
    ("x", "float32", TypeError), (1, "string", TypeError), (1, "bool", TypeError),
    (1, "complex64", TypeError), (1, "nonsense", TypeError), ("\ud800", None, ValueError),
])
def test_values_that_cannot_be_stored_raise_typed_errors(value, dtype, error):
    with pytest.raises(error, match="where"):
        values.encode(value, dtype, "where")


def test_dtype_overrides_store_the_value_as_that_numpy_type():
    back = values.decode(*values.encode(7, "uint8"))
    assert type(back) is np.uint8 and back == 7
    back = values.decode(*values.encode(0.1, "float32"))
    assert type(back) is np.float32 and back == np.float32(0.1)
    assert values.decode(*values.encode("2024-03-01", "timestamp_ns")) == np.datetime64(
        "2024-03-01", "ns")


def test_structured_values_are_strict_json():
    tag, _num, data = values.encode({"x": [float("nan"), b"\x01"]})
    assert tag == values.STRUCT
    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


# -- column sections ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["i8", "i8d", "f8", "i4", "u4", "u1"])
@pytest.mark.parametrize("rows", [0, 1, 1000])
def test_numeric_columns_round_trip(kind, rows):
    rng = np.random.default_rng(rows)
    info = np.iinfo({"i8": np.int64, "i8d": np.int64, "f8": np.int64, "i4": np.int32,
                     "u4": np.uint32, "u1": np.uint8}[kind])
    data = rng.integers(info.min // 2, info.max // 2, rows, endpoint=True)
    stored, spec, decoded = columns.encode_section([("c", kind, data)])
    back = columns.decode_section(stored, spec, rows, decoded, "here")["c"]
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("texts", [[], [""], ["a", "", "bé"], ["with\x00nul", "x"], ["日本"] * 50])
def test_text_and_byte_columns_round_trip(texts):
    stored, spec, decoded = columns.encode_section(
        [("t", "txt", texts), ("b", "bin", [t.encode() for t in texts])])
    back = columns.decode_section(stored, spec, len(texts), decoded, "here")
    assert back["t"] == texts and back["b"] == [t.encode() for t in texts]


@pytest.mark.parametrize("flag", [0, 1])
def test_a_text_column_that_is_not_utf8_is_corruption(flag):
    data = b"\x00ab\x00\xff" if flag == 0 else (
        b"\x01" + np.array([2, 1], "<i8").tobytes() + b"ab\xff")
    with pytest.raises(atlas.CorruptionError, match="here: text column is not UTF-8"):
        columns.decode_column(memoryview(data), "txt", 2, "here")


def test_sorted_keys_compress_to_almost_nothing():
    keys_ = np.arange(1_000_000, dtype=np.int64) * 7 + 3
    stored, _spec, _decoded = columns.encode_section([("k", "i8d", keys_)])
    assert len(stored) < 2000


@pytest.mark.parametrize("values", [np.arange(5), np.full(1000, 7), np.arange(10, -20, -3),
                                    np.array([-(2**63), -1]), np.array([3, 3 + 2**62])])
@pytest.mark.parametrize("framed", [False, True])
def test_evenly_spaced_integers_are_stored_as_a_sequence(values, framed):
    """An i8d column of evenly spaced values (dense keys, one schema id) is stored as
    (first, step): 16 bytes, and decodes to the same values."""
    other = np.arange(len(values)) ** 2  # not evenly spaced: stays i8d
    stored, spec, decoded = columns.encode_section([("k", "i8d", values), ("x", "i8d", other)],
                                                   framed=framed)
    assert [entry[1] for entry in spec] == ["i8s", "i8d" if len(values) > 2 else "i8s"]
    assert spec[0][2] == 16
    back = columns.decode_section(stored, spec, len(values), decoded, "here")
    np.testing.assert_array_equal(back["k"], values)
    np.testing.assert_array_equal(back["x"], other)
    assert back["k"].dtype == np.int64


@pytest.mark.parametrize("broken", [None, 1, 70_000, 65_536, 65_537, 199_998])
def test_long_columns_are_sequences_only_when_every_step_is_even(broken):
    # the step is checked piece by piece: a break anywhere (a piece's first or last value
    # included) keeps the column i8d, whatever its two ends say; strided columns as well
    table = np.zeros((200_000, 3), np.int64)
    table[:, 1] = np.arange(5, 5 + 3 * 200_000, 3)
    if broken is not None:
        table[broken, 1] += 1
    values = table[:, 1]  # a strided view, as a pending segment's columns are
    stored, spec, decoded = columns.encode_section([("k", "i8d", values)])
    assert spec[0][1] == ("i8s" if broken is None else "i8d")
    back = columns.decode_section(stored, spec, len(values), decoded, "here")
    np.testing.assert_array_equal(back["k"], values)


def test_a_step_past_int64_stays_a_column_of_differences():
    values = np.array([-(2**63), 2**63 - 1, -1])  # differences wrap around int64
    stored, spec, decoded = columns.encode_section([("k", "i8d", values[:2])])
    assert spec[0][1] == "i8d"
    np.testing.assert_array_equal(
        columns.decode_section(stored, spec, 2, decoded, "here")["k"], values[:2])
    forged = np.array([2**62, 2**62], "<i8").tobytes()  # 2^62, 2^63, ...: past int64
    with pytest.raises(atlas.CorruptionError, match="past int64"):
        columns.decode_column(memoryview(forged), "i8s", 3, "here")


@pytest.mark.parametrize("rows", [0, 1, 3])
def test_a_sequence_column_of_the_wrong_size_or_too_few_rows_is_corruption(rows):
    raw = np.array([5, 1], "<i8").tobytes()
    for data in (raw + b"\0" * 8, raw[:8]):
        with pytest.raises(atlas.CorruptionError, match="here"):
            columns.decode_column(memoryview(data), "i8s", 3, "here")
    if rows < 2:  # a writer stores one value or none as i8d
        with pytest.raises(atlas.CorruptionError, match="here"):
            columns.decode_column(memoryview(raw), "i8s", rows, "here")
    else:
        assert columns.decode_column(memoryview(raw), "i8s", rows, "here").tolist() == [5, 6, 7]


def test_a_section_whose_spec_or_size_lies_raises_corruption_error_before_allocating():
    stored, spec, decoded = columns.encode_section([("c", "i8", np.arange(10))])
    with pytest.raises(atlas.CorruptionError):  # a decompression bomb claim
        columns.decode_section(stored, [["c", "i8", 1 << 40]], 10, 1 << 40, "here")
    with pytest.raises(atlas.CorruptionError):
        columns.decode_section(stored, spec, 10, decoded + 8, "here")
    with pytest.raises(atlas.CorruptionError):
        columns.decode_section(stored, spec, 11, decoded, "here")
    with pytest.raises(atlas.CorruptionError):
        columns.decode_section(stored, [["c", "zz", decoded]], 10, decoded, "here")
    with pytest.raises(atlas.CorruptionError):
        columns.decode_section(stored[:-3], spec, 10, decoded, "here")


# -- segments -----------------------------------------------------------------------------------

def _segment(path: Path, blocks):
    """Write ``blocks`` (each a list of (slot, chunk, payload)) as one segment."""
    writer = SegmentWriter(str(path))
    for chunks_ in blocks:
        raw = b"".join(p for _s, _c, p in chunks_)
        number = writer.write_block(codecs.encode(1, raw, 1), len(raw), 1)
        offset = 0
        for slot, chunk, payload in chunks_:
            writer.chunks.append(slot, chunk, number, offset, len(payload), 0)
            offset += len(payload)
    index = writer.finish()
    writer.release()
    return index


def _read(path: Path):
    data = path.read_bytes()
    tail_start = max(0, len(data) - FOOTER_PROBE)
    footer = parse_footer(memoryview(data)[tail_start:], tail_start, len(data),
                          lambda o, n: data[o:o + n], str(path))
    return footer, parse_index(footer, lambda o, n: data[o:o + n], str(path))


def test_segment_blocks_and_index_round_trip(tmp_path):
    path = tmp_path / "s.seg"
    blocks = [[(0, 0, b"alpha"), (1, 0, b"beta")], [(7, 2, b"x" * 1000)]]
    written = _segment(path, blocks)
    data = path.read_bytes()
    assert data[:8] == SEGMENT_MAGIC == b"ATLSEG02"
    footer, index = _read(path)
    for name in written.chunks:
        np.testing.assert_array_equal(index.chunks[name], written.chunks[name])
    assert index.chunks["slot"].tolist() == [0, 1, 7]
    assert index.chunks["block"].tolist() == [0, 0, 1]
    for b in range(index.n_blocks):
        stored = data[index.blocks["offset"][b]:][: index.blocks["stored"][b]]
        assert codecs.checksum(stored) == index.blocks["crc"][b]
    assert footer.end_of_payload == index.blocks["offset"][1] + index.blocks["stored"][1]


def test_an_empty_segment_has_an_empty_index(tmp_path):
    _segment(tmp_path / "s.seg", [])
    assert _read(tmp_path / "s.seg")[1].rows == 0


def test_a_damaged_segment_footer_or_trailer_raises_corruption_error(tmp_path):
    path = tmp_path / "s.seg"
    _segment(path, [[(0, 0, b"payload"), (1, 0, b"more")]])
    data = path.read_bytes()
    footer, _index = _read(path)
    index_start = footer.end_of_payload
    for position in range(index_start, len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(atlas.CorruptionError, match="s.seg"):
            _read(path)
    path.write_bytes(data[:20])
    with pytest.raises(atlas.CorruptionError):
        _read(path)


def test_segment_writer_refuses_blocks_after_finish(tmp_path):
    writer = SegmentWriter(str(tmp_path / "s.seg"))
    writer.finish()
    with pytest.raises(ValueError):
        writer.write_block(b"late", 4, 0)
    writer.release()


def test_an_index_pointing_outside_its_blocks_is_refused(tmp_path):
    path = tmp_path / "s.seg"
    writer = SegmentWriter(str(path))
    number = writer.write_block(b"abcd", 4, 0)
    writer.chunks.append(0, 0, number, 2, 3, 0)  # 2 + 3 > 4 decoded bytes
    writer.finish()
    writer.release()
    with pytest.raises(atlas.CorruptionError, match="outside its block"):
        _read(path)


def test_the_chunk_index_costs_at_most_16_bytes_a_chunk_on_disk(store_path):
    rng = np.random.default_rng(0)
    n = 20_000
    with atlas.Atlas.create(store_path) as store:
        names = [f"p{i:06d}" for i in range(n)]
        store.write_array_across_stacked("lat", names, rng.uniform(-90, 90, n))
        store.write_array_across_stacked("temp", names, rng.standard_normal((n, 7)).astype("f4"))
    for path in (store_path / "segments").glob("*.seg"):
        footer, index = _read(path)
        index_bytes = path.stat().st_size - footer.end_of_payload
        assert index.rows == n and index_bytes <= 16 * n


# -- catalog parts and tables -------------------------------------------------------------------

def _table(kind, keys_, dead=None, **cols):
    return Table.from_rows(kind, keys_, np.zeros(len(keys_), bool) if dead is None else dead, cols)


def test_table_merge_keeps_the_newest_row_of_each_key_and_drops_tombstones_on_request():
    old = _table("datasets", [0, 1, 2], name=["a", "b", "c"])
    new = _table("datasets", [1, 3], dead=np.array([True, False]), name=["b", "d"])
    merged = merge("datasets", [old, new])
    assert merged.key.tolist() == [0, 1, 2, 3] and merged.dead.tolist() == [0, 1, 0, 0]
    live = merge("datasets", [old, new], drop_dead=True)
    assert live.key.tolist() == [0, 2, 3] and list(live.columns["name"]) == ["a", "c", "d"]
    assert len(merge("datasets", [])) == 0


@given(st.lists(st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=12),
                min_size=1, max_size=4),
       st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_table_merge_is_the_newest_row_of_each_key_whether_keys_interleave_or_follow(
        tables_rows, follow, drop_dead, seed):
    """Against a dict: tables whose keys interleave (a sort) and tables each of which holds keys
    after the previous one's (datasets created since: no sort), and a few rows taken."""
    tables, reference, base, serial = [], {}, 0, 0
    for rows in tables_rows:
        by_key = {key + base: dead for key, dead in rows}  # sorted, unique within a table
        keys_ = sorted(by_key)
        if follow and keys_:
            base = keys_[-1] + 1
        names = [f"n{serial + i}" for i in range(len(keys_))]
        serial += len(keys_)
        dead = np.array([by_key[k] for k in keys_], bool)
        tables.append(_table("datasets", keys_, dead=dead, name=names))
        reference.update({k: (d, n) for k, d, n in zip(keys_, dead.tolist(), names)})
    merged = merge("datasets", tables, drop_dead=drop_dead)
    expected = sorted((k, d, n) for k, (d, n) in reference.items() if not (drop_dead and d))
    assert merged.key.tolist() == [k for k, _d, _n in expected]
    assert merged.dead.tolist() == [d for _k, d, _n in expected]
    assert list(merged.columns["name"]) == [n for _k, _d, n in expected]
    if expected:
        rows = np.random.default_rng(seed).integers(0, len(expected), 3)
        again = merge("datasets", tables, drop_dead=drop_dead)  # its columns not loaded yet
        assert list(again.take("name", rows)) == [expected[i][2] for i in rows.tolist()]


def test_a_constant_column_is_read_only_and_holds_no_memory_per_row():
    column = columns.constant(7, 1000, np.int64)
    assert column.tolist() == [7] * 1000 and column.dtype == np.int64
    assert column.strides == (0,) and not column.flags.writeable
    with pytest.raises(ValueError):
        column[0] = 1
    assert columns.constant("", 3, object).tolist() == ["", "", ""]
    assert len(columns.constant(0, 0, np.uint8)) == 0


def test_rows_logged_twice_for_a_key_keep_the_last():
    table = _table("array", [5, 2, 5], slot=[1, 2, 3], schema=[0, 0, 1])
    assert table.key.tolist() == [2, 5] and table.columns["slot"].tolist() == [2, 3]


def test_catalog_parts_round_trip_their_tables(tmp_path):
    tables = {("datasets",): _table("datasets", [0, 1], name=["x", "y"]),
              ("array", "temp"): _table("array", [1], slot=[4], schema=[0], nulls=[1], valid=[9],
                                        min=[-3], max=[7]),
              ("array", "names"): _table("array", [0], slot=[5], schema=[1], smin=["a"],
                                         smax=["z"]),
              ("attr", "k"): _table("attr", [0, 1], seq=[0, 1], tag=[2, 4], num=[5, 0],
                                    data=[b"", b"v"])}
    path = tmp_path / "p.cat"
    write_part(str(path), tables.items()).release()
    data = path.read_bytes()
    assert data[:8] == PART_MAGIC
    footer = parse_footer(memoryview(data), 0, len(data), None, "p")
    for sid, table in tables.items():
        back = read_table(footer, sid, lambda o, n: data[o:o + n], "p")
        assert back.key.tolist() == table.key.tolist()
        for name in table.columns:
            assert list(back.columns[name]) == list(table.columns[name]), (sid, name)
    assert read_table(footer, ("attr", "missing"), None, "p") is None


# -- what a store looks like --------------------------------------------------------------------

def test_store_layout_is_a_root_catalog_parts_and_segments(store_path):
    with atlas.Atlas.create(store_path) as store:
        ds = store.create_dataset("d")
        for name in ("temperature", "odd name%", "T"):
            ds.define_array(name, "int8", dims=["x"], shape=[2])
            ds.write_array(name, [0], np.ones(2, np.int8))
    assert (store_path / keys.ROOT_KEY).is_file()
    segments = sorted((store_path / "segments").iterdir())
    parts = sorted((store_path / "catalog").iterdir())
    assert len(segments) == 3 and len(parts) == 1  # one segment per array name per flush
    for path in segments + parts:
        key = path.relative_to(store_path).as_posix()
        assert keys.is_data_key(key), key
    assert all(p.read_bytes()[:8] == SEGMENT_MAGIC for p in segments)
    assert parts[0].read_bytes()[:8] == PART_MAGIC


def test_the_names_filter_never_misses_a_name_and_rarely_claims_one():
    from atlas.format import bloom

    names = [f"argo_{i:07d}" for i in range(20_000)] + ["é", "", "日本"]
    bits = bloom.build(names)
    assert len(bits) * 8 >= bloom.BITS_PER_NAME * len(names)
    assert all(bloom.might_contain(bits, n) for n in names[::97] + names[-3:])
    others = [f"other_{i}" for i in range(5000)]
    false = sum(bloom.might_contain(bits, n) for n in others)
    assert false < 0.03 * len(others)
    # the hash is of the UTF-8 bytes: stable across processes and platforms
    assert int(bloom.name_hashes(["a"])[0]) == 0xAF63DC4C8601EC8C
    # names of every length hashed together equal each hashed alone (a NUL: one by one)
    mixed = ["", "x" * 300, "é", "ab", "a\x00b", "ab"] + names[:50]
    together = bloom.name_hashes(mixed)
    alone = [int(bloom.name_hashes_of_bytes(n.encode())[0]) for n in mixed]
    assert together.tolist() == alone
    assert bloom.name_hashes(mixed[:4] + mixed[5:]).tolist() == alone[:4] + alone[5:]


@pytest.mark.parametrize("names", [[f"p{i:05d}" for i in range(300)],  # one length
                                   ["", "é", "ab", "x" * 70, "日本", "a b"]])
@pytest.mark.parametrize("compiled", [False, True])  # numpy's loop before Numba is loaded
def test_the_names_filter_sets_the_bits_its_spec_names(names, compiled, monkeypatch):
    # docs/format.md: FNV-1a 64 of the UTF-8 bytes; h1 its low, h2 its high 32 bits made odd;
    # bits (h1 + i h2) mod 8m for i < 7, bit p the (7 - p % 8)th of byte p // 8
    from atlas import kernels
    from atlas.format import bloom

    monkeypatch.setattr(kernels, "loops_loaded", lambda: compiled)
    bits = bloom.build(names)
    expected = bytearray(len(bits))
    for name in names:
        h = 0xCBF29CE484222325
        for byte in name.encode("utf-8"):
            h = ((h ^ byte) * 0x100000001B3) % 2**64
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        for i in range(7):
            p = (h1 + i * h2) % (8 * len(bits))
            expected[p // 8] |= 1 << (7 - p % 8)
    assert bits.tobytes() == bytes(expected)


RETIRED_DAMAGE = [
    lambda e: e.__setitem__(0, "../victim.seg"), lambda e: e.__setitem__(0, 7),
    lambda e: e.__setitem__(0, SEG + "\n" + SEG), lambda e: e.__setitem__(1, "1.0"),
    lambda e: e.__setitem__(1, True), lambda e: e.__setitem__(1, float("nan")),
    lambda e: e.__setitem__(2, -1), lambda e: e.__setitem__(2, 2.0),
    lambda e: e.__setitem__(2, 2**62), lambda e: e.clear(), lambda e: e.pop()]


@pytest.mark.parametrize("damage", range(len(RETIRED_DAMAGE)))
@pytest.mark.parametrize("at", [0, 1500, 2999])
def test_a_long_retired_list_is_checked_entry_for_entry(damage, at):
    """Long lists take a column-at-a-time check; one bad entry anywhere still fails the root
    as the entry-by-entry check does."""
    entries = [[f"segments/{g:08d}-{g:032x}.seg", 1.7e9 + g, g] for g in range(3000)]
    entries[1].pop()  # a version-1 upgrade's entry: no generation, read as 0
    good = root_format.decode(_forged(lambda d: d.update(retired=entries)), "here")
    assert good.retired == [(k, float(t), g) for k, t, *rest in entries
                            for g in [rest[0] if rest else 0]]
    RETIRED_DAMAGE[damage](entries[at])
    if damage == len(RETIRED_DAMAGE) - 1 and at != 1:  # dropping the generation is allowed
        assert root_format.decode(_forged(lambda d: d.update(retired=entries)), "here")
        return
    with pytest.raises(atlas.CorruptionError, match="here"):
        root_format.decode(_forged(lambda d: d.update(retired=entries)), "here")


def test_a_root_head_is_its_first_fields_and_must_agree_with_the_whole():
    root = _root()
    data = root.encode()
    head = root_format.head(data, "here")
    assert isinstance(head, root_format.RootHead)
    assert (head.generation, head.commit, head.time) == (3, root.commit, root.time)
    assert head.full() == root_format.decode(data, "here")
    # a document written otherwise (json.dumps' default spaces) is decoded whole
    assert isinstance(root_format.head(_forged(lambda d: None), "here"), Root)
    # a forged document naming its generation twice: the head and the whole disagree
    doc = json.dumps(root.to_json(), separators=(",", ":"))
    payload = zstandard.ZstdCompressor().compress((doc[:-1] + ',"generation":9}').encode())
    forged = root_format.HEADER.pack(root_format.MAGIC, 2, codecs.checksum(payload),
                                     len(payload)) + payload
    assert root_format.head(forged, "here").generation == 3
    with pytest.raises(atlas.CorruptionError, match="here"):
        root_format.head(forged, "here").full()
