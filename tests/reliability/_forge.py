"""Forging stores with valid checksums and invalid content (format version 2, and version 1).

A forger rewrites a store's commit record (the root), one of its catalog parts or segments
through the format code itself, so every checksum is right and only the content lies. When the
on-disk format changes, only this module changes: the tests say what a forged store must do,
not how it is laid out.

Version 2 (``docs/format.md``): the root is a header plus one zstd frame of JSON; parts and
segments are containers (magic, payload, sections of typed columns, footer, trailer). Version 1
(``atlas.format.legacy``): one manifest of JSON records, segments of one frame per chunk.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import zstandard

from atlas.codecs import checksum, decompress_frame
from atlas.format import container
from atlas.format import root as root_format
from atlas.format.columns import declared_kind, encode_section
from atlas.format.keys import ROOT_KEY, new_segment_key
from atlas.format.segment import SegmentWriter

# -- the root (commit record) -----------------------------------------------------------------


def _path(root, key: str) -> str:
    return os.path.join(str(root), *key.split("/"))


def root_doc(root) -> dict:
    """The JSON document of the store's root (either version), checked as atlas checks it."""
    with open(_path(root, ROOT_KEY), "rb") as f:
        data = f.read()
    payload = root_format.checked_payload(data, "forge")
    return json.loads(bytes(decompress_frame(payload, "forge")))


def frame(raw: bytes, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=content_size).compress(raw)


def write_root_payload(root, payload: bytes, version: int = 2) -> None:
    """A root whose payload is ``payload`` (any bytes: a decompression bomb, say) under a valid
    header: magic, version, checksum and length all match."""
    header = root_format.HEADER.pack(root_format.MAGIC, version, checksum(payload), len(payload))
    with open(_path(root, ROOT_KEY), "wb") as f:
        f.write(header + payload)


def write_root(root, doc: Any) -> None:
    """Commit ``doc`` (any JSON value) as a root with a valid checksum, under the version its
    document names (2 where it names none that a header can hold)."""
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8",
                                                                           "surrogatepass")
    version = doc.get("version") if isinstance(doc, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or \
            not 2 <= version <= root_format.VERSION:
        version = 2
    write_root_payload(root, frame(raw), version)


def forge_root(root, change: Callable[[dict], Any]) -> None:
    """Edit the root's document in place and commit it (valid checksum)."""
    doc = root_doc(root)
    out = change(doc)
    write_root(root, doc if out is None else out)


def refs(root, array: str | None = None) -> list:
    """The root's ``[key, size, level]`` entries: the parts, or the segments of ``array``."""
    doc = root_doc(root)
    return doc["parts"] if array is None else doc["segments"][array]


def set_ref(root, key: str, size: int) -> None:
    """Make the root record ``size`` for the file ``key`` (after a forger rewrote it)."""
    def change(doc):
        for entry in [*doc["parts"], *(r for rs in doc["segments"].values() for r in rs)]:
            if entry[0] == key:
                entry[1] = size
    forge_root(root, change)


# -- containers: catalog parts and segments ----------------------------------------------------


@dataclass
class Section:
    """One section of a container, decoded: its id and ``[name, kind, values]`` columns."""

    id: list
    columns: list[list]
    rows: int
    sized: bool = True  # False: its zstd frame does not declare its decoded size

    def column(self, name: str):
        for col in self.columns:
            if col[0] == name:
                return col[2]
        raise KeyError(name)

    def set(self, name: str, values) -> None:
        for col in self.columns:
            if col[0] == name:
                col[2] = values
                return
        raise KeyError(name)


@dataclass
class Container:
    magic: bytes
    payload: bytes  # between the magic and the first section (segments: the blocks)
    sections: list[Section]
    footer: dict = field(default_factory=dict)  # what the file kind adds ("kind", "values")

    def section(self, section_id) -> Section:
        for s in self.sections:
            if s.id == list(section_id):
                return s
        raise KeyError(section_id)


def read_container(path: str) -> Container:
    with open(path, "rb") as f:
        data = f.read()
    footer = container.parse_footer(memoryview(data), 0, len(data),
                                    lambda o, n: data[o : o + n], path)
    sections = []
    for section_id, ref in footer.sections.items():
        cols = container.read_section(ref, data[ref.offset : ref.offset + ref.stored], path)
        # the declared kind: a column stored as i8s (first value and step) that a forgery
        # changes must be written out whole
        sections.append(Section(list(section_id), [[name, declared_kind(kind), cols[name]]
                                                   for name, kind, *_n in ref.spec], ref.rows))
    return Container(data[:8], data[8 : footer.end_of_payload], sections, footer.extra)


EntryLie = Callable[[list], Any]  # edits [id, offset, stored, decoded, rows, crc, spec]


def write_container(path: str, c: Container, lie: EntryLie | None = None,
                    footer_lie: Callable[[dict], Any] | None = None) -> int:
    """Write ``c`` at ``path`` with every checksum valid; ``lie`` may edit each section's footer
    entry and ``footer_lie`` the footer document (then the footer's checksum is recomputed).
    Returns the file's size."""
    out = bytearray(c.magic + c.payload)
    entries = []
    for s in c.sections:
        stored, spec, decoded = encode_section([tuple(col) for col in s.columns])
        if not s.sized:
            stored = frame(zstandard.ZstdDecompressor().decompress(stored), False)
        entry = [list(s.id), len(out), len(stored), decoded, s.rows, checksum(stored), spec]
        out += stored
        if lie is not None:
            lie(entry)
        entries.append(entry)
    doc = dict(c.footer, sections=entries)
    if footer_lie is not None:
        doc = footer_lie(doc) or doc
    raw = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    stored = frame(raw)
    offset = len(out)
    out += stored
    out += container.TRAILER.pack(container.TRAILER_MAGIC, container.VERSION, checksum(stored),
                             offset, len(stored), len(raw))
    with open(path, "wb") as f:
        f.write(out)
    return len(out)


def forge_file(root, key: str, edit: Callable[[Container], Any] | None = None,
               lie: EntryLie | None = None, footer_lie=None) -> None:
    """Rewrite the part or segment ``key`` of the store with ``edit`` applied to its decoded
    container (and ``lie``/``footer_lie`` to its footer), then record its new size in the root."""
    path = _path(root, key)
    c = read_container(path)
    if edit is not None:
        edit(c)
    set_ref(root, key, write_container(path, c, lie, footer_lie))


def part_with(root, section_id) -> str:
    """The key of the newest catalog part holding the table ``section_id``."""
    for key, _size, _level in reversed(refs(root)):
        if list(section_id) in [s.id for s in read_container(_path(root, key)).sections]:
            return key
    raise KeyError(section_id)


def forge_table(root, section_id, edit: Callable[[Section], Any]) -> str:
    """Edit the columns of one catalog table in the newest part holding it; returns the part's
    key."""
    key = part_with(root, section_id)
    forge_file(root, key, lambda c: edit(c.section(section_id)))
    return key


def forge_index(root, array: str, name: str, edit: Callable[[Section], Any],
                which: int = -1) -> str:
    """Edit the ``name`` section ("blocks", "chunks", "partials") of one segment of ``array``
    (the newest by default); returns the segment's key."""
    key = refs(root, array)[which][0]
    forge_file(root, key, lambda c: edit(c.section([name])))
    return key


def slot_of(root, dataset: str, array: str) -> int:
    import atlas

    store = atlas.Atlas.open(root)
    return store._catalog.array_row(array, store._did(dataset))[0]


def forge_block(root, dataset: str, array: str, stored: bytes, decoded: int, codec_id: int,
                length: int | None = None) -> str:
    """Replace the segments of ``array`` by one new segment holding one block (``stored``,
    claiming ``decoded`` bytes once decoded with codec ``codec_id``) whose only chunk is chunk 0
    of ``dataset``'s ``array``, ``length`` bytes at offset 0 (default: the whole block). The
    block's checksum, the index's and the root's are all valid."""
    slot = slot_of(root, dataset, array)
    doc = root_doc(root)
    key = new_segment_key(doc["generation"])
    writer = SegmentWriter(_path(root, key))
    writer.write_block(stored, decoded, codec_id)
    writer.chunks.append(slot, 0, 0, 0, decoded if length is None else length, 0)
    writer.finish()
    writer.release()
    doc["segments"][array] = [[key, writer.size, 0]]
    write_root(root, doc)
    return key


# -- format version 1 -------------------------------------------------------------------------

V1_TRAILER = struct.Struct("<8sIIQQQII")
V1_COLUMNS = 12  # slot, chunk, offset, stored, decoded, mask, codec, crc, nulls, valid, min, max


def v1_doc(root) -> dict:
    """A version-1 manifest's document, its dataset records parsed (``atlas.format.legacy``)."""
    from atlas.format.legacy import decode_manifest

    with open(_path(root, ROOT_KEY), "rb") as f:
        return decode_manifest(f.read(), "forge")


def write_v1(root, doc: dict) -> None:
    """Commit ``doc`` as a version-1 manifest: header JSON, then one JSON record per dataset."""
    doc = dict(doc)
    records = [json.dumps(r).encode("utf-8") for r in doc["datasets"].values()]
    doc["datasets"] = {"names": list(doc["datasets"]),
                       "ends": np.cumsum([len(r) for r in records]).tolist()}
    header = json.dumps(doc).encode("utf-8")
    raw = struct.pack("<Q", len(header)) + header + b"".join(records)
    write_root_payload(root, frame(raw), 1)


def forge_v1(root, change: Callable[[dict], Any]) -> None:
    doc = v1_doc(root)
    change(doc)
    write_v1(root, doc)


def write_v1_segment(path: str, records: list[tuple]) -> int:
    """A version-1 segment of ``(slot, chunk, stored, decoded length, codec)`` records (no
    masks, no statistics) with valid checksums; returns its size."""
    out = bytearray(b"ATLSEG01")
    cols = [[] for _ in range(V1_COLUMNS)]
    for slot, chunk, stored, decoded, codec in records:
        row = [slot, chunk, len(out), len(stored), decoded, 0, codec, checksum(stored), 0, 0,
               0, 0]
        for col, value in zip(cols, row):
            col.append(value)
        out += stored
    index = np.array(cols, "<i8").tobytes()
    offset = len(out)
    out += index
    out += V1_TRAILER.pack(b"ATLSIDX1", 1, V1_COLUMNS, len(records), offset, len(index),
                           checksum(index), 0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(out)
    return len(out)


def forge_v1_chunk(root, dataset: str, array: str, stored: bytes, decoded: int,
                   codec_id: int, replace: bool = True) -> str:
    """Replace the version-1 segments of ``array`` by one whose only record is chunk 0 of
    ``dataset``'s ``array`` (``replace=False``: add it as the newest segment, so that only
    that chunk changes)."""
    doc = v1_doc(root)
    slot = doc["datasets"][dataset]["arrays"][array]["slot"]
    key = f"segments/{array}/99999999-{'f' * 32}.seg"
    size = write_v1_segment(_path(root, key), [(slot, 0, stored, decoded, codec_id)])
    doc["segments"][array] = [*([] if replace else doc["segments"][array]), [key, size, 1]]
    write_v1(root, doc)
    return key
