"""On-disk formats: the manifest and segment files encode, decode and detect damage."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from core_helpers import segment_files

import atlas
from atlas.dtypes import resolve_dtype
from atlas.format import segment
from atlas.format.manifest import MAGIC, MANIFEST_KEY, Manifest, Schema


def _manifest_with_content() -> Manifest:
    m = Manifest.new("lz4", 0)
    schema = Schema(resolve_dtype("float32"), ("y", "x"), (4, 5), (2, 5), float("nan"))
    sid = m.intern(schema)
    m.datasets["d"] = {"attrs": {"k": ["string", "v"]},
                       "arrays": {"v": {"slot": m.new_slot(), "schema": sid, "attrs": {},
                                        "stats": None}}}
    return m


def test_manifest_round_trips_through_encode_and_decode():
    m = _manifest_with_content()
    back = Manifest.decode(m.encode(), "here")
    assert back.doc["codec"] == "lz4" and back.generation == 0
    assert list(back.datasets) == ["d"]
    schema = back.schemas[back.datasets["d"]["arrays"]["v"]["schema"]]
    assert schema.dtype.name == "float32" and schema.shape == (4, 5)
    assert np.isnan(schema.fill)
    assert back.doc["next_slot"] == 1


def test_identical_schemas_are_interned_once():
    m = Manifest.new("zstd", 1)
    dt = resolve_dtype("int8")
    a = m.intern(Schema(dt, ("x",), (3,), (3,), None))
    b = m.intern(Schema(dt, ("x",), (3,), (3,), None))
    c = m.intern(Schema(dt, ("x",), (3,), (3,), 0))
    assert a == b != c and len(m.doc["schemas"]) == 2


def test_manifest_starts_with_its_magic_and_version():
    data = Manifest.new("zstd", 1).encode()
    assert data[:8] == MAGIC == b"ATLMAN01"
    assert struct.unpack_from("<I", data, 8)[0] == 1


@pytest.mark.parametrize("data", [b"", b"garbage", b"ATLMAN0", b"{}" * 20])
def test_bytes_that_are_not_a_manifest_raise_format_error(data):
    with pytest.raises(atlas.FormatError, match="here"):
        Manifest.decode(data, "here")


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unknown_manifest_versions_raise_format_error(version):
    data = bytearray(Manifest.new("zstd", 1).encode())
    struct.pack_into("<I", data, 8, version)
    with pytest.raises(atlas.FormatError, match=str(version)):
        Manifest.decode(bytes(data), "here")


def test_every_flipped_payload_byte_of_a_manifest_raises_corruption_error():
    data = _manifest_with_content().encode()
    for i in range(12, len(data)):  # checksum, length and payload
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(atlas.CorruptionError, match="here"):
            Manifest.decode(bytes(damaged), "here")
    with pytest.raises(atlas.CorruptionError):
        Manifest.decode(data[:-1], "here")  # truncated


def _write_segment(path: Path, records):
    writer = segment.SegmentWriter(str(path))
    rows = [writer.append(slot, chunk, payload, len(payload), b"", 0, (0, 1, 2, 3))
            for slot, chunk, payload in records]
    index = writer.finish()
    writer.release()
    return rows, index


def _read_index(path: Path):
    data = path.read_bytes()
    return segment.parse_index(data[-segment.TRAILER.size:],
                               lambda off, n: data[off:off + n], str(path))


def test_segment_records_and_index_round_trip(tmp_path):
    path = tmp_path / "s.seg"
    records = [(0, 0, b"alpha"), (0, 3, b""), (7, 1, b"x" * 1000)]
    rows, written = _write_segment(path, records)
    data = path.read_bytes()
    assert data[:8] == segment.HEADER == b"ATLSEG01"
    assert data[-segment.TRAILER.size:][:8] == segment.TRAILER_MAGIC
    index = _read_index(path)
    assert index.rows == 3
    for name in segment.COLUMNS:
        np.testing.assert_array_equal(index.columns[name], written.columns[name])
    for (slot, chunk, payload), offset, length in zip(records, index.columns["offset"],
                                                      index.columns["stored_length"]):
        assert data[offset:offset + length] == payload
    assert index.columns["slot"].tolist() == [0, 0, 7]
    assert index.columns["chunk"].tolist() == [0, 3, 1]


def test_an_empty_segment_has_an_empty_index(tmp_path):
    path = tmp_path / "s.seg"
    _write_segment(path, [])
    assert _read_index(path).rows == 0


def test_a_damaged_segment_index_or_trailer_raises_corruption_error(tmp_path):
    path = tmp_path / "s.seg"
    _write_segment(path, [(0, 0, b"payload"), (1, 0, b"more")])
    data = path.read_bytes()
    index_start = len(data) - segment.TRAILER.size - 2 * 8 * len(segment.COLUMNS)
    for position in (index_start, len(data) - segment.TRAILER.size + 2, len(data) - 10,
                     len(data) - 1):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(atlas.CorruptionError, match="s.seg"):
            _read_index(path)
    path.write_bytes(data[:20])
    with pytest.raises(atlas.CorruptionError):
        _read_index(path)


def test_segment_writer_refuses_appends_after_finish(tmp_path):
    writer = segment.SegmentWriter(str(tmp_path / "s.seg"))
    writer.finish()
    with pytest.raises(ValueError):
        writer.append(0, 0, b"late", 4, b"", 0, (0, 0, 0, 0))
    writer.release()


def test_store_layout_is_a_manifest_and_segments_grouped_per_array_name(store_path):
    with atlas.Atlas.create(store_path) as store:
        ds = store.create_dataset("d")
        for name in ("temperature", "odd name%"):
            ds.define_array(name, "int8", dims=["x"], shape=[2])
            ds.write_array(name, [0], np.ones(2, np.int8))
    assert (store_path / MANIFEST_KEY).is_file()
    groups = sorted(p.parent.name for p in segment_files(store_path))
    assert groups == ["odd%20name%25", "temperature"]  # names are quoted into one path segment
    for path in segment_files(store_path):
        generation, rest = path.stem.split("-", 1)
        assert generation.isdigit() and len(rest) == 32
        assert path.read_bytes()[:8] == segment.HEADER
