"""Format version 1, read only: stores written before format version 2 keep opening.

Version 1 kept one manifest rewritten whole per commit (a zstd frame of JSON: a header plus one
JSON record per dataset) and segments of one compressed frame per chunk, followed by a
12-column int64 index. :class:`LegacyStore` turns both into the structures of version 2 in
memory (catalog tables, chunk indexes), so that reading, ``verify()`` and ``atlas upgrade``
share the code of version 2. Writing needs an upgrade (``atlas.core._upgrade``).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
import zstandard

from atlas import codecs
from atlas.errors import CorruptionError
from atlas.format import values as value_format
from atlas.format.keys import checked
from atlas.format.root import DEFAULT_BLOCK_SIZE, FileRef, Root, checked_payload
from atlas.format.schema import Schema
from atlas.format.segment import SegmentIndex
from atlas.format.tables import Table

_U64 = struct.Struct("<Q")
SEGMENT_HEADER = b"ATLSEG01"
TRAILER = struct.Struct("<8sIIQQQII")
TRAILER_MAGIC = b"ATLSIDX1"
COLUMNS = ("slot", "chunk", "offset", "stored_length", "decoded_length", "mask_length", "codec",
           "checksum", "nulls", "valid", "min", "max")
_I64 = np.int64


def decode_manifest(data: bytes, where: str) -> dict:
    """The version-1 manifest document, with ``"datasets"`` as a dict of parsed records."""
    payload = checked_payload(data, where)
    raw = codecs.decompress_frame(payload, where)  # bounded: a bomb is refused unallocated
    try:
        (header_length,) = _U64.unpack_from(raw)
        doc = json.loads(raw[_U64.size : _U64.size + header_length])
        blob = raw[_U64.size + header_length :]
        names, ends = doc["datasets"]["names"], doc["datasets"]["ends"]
        if len(names) != len(ends) or (ends and ends[-1] != len(blob)):
            raise ValueError("dataset records do not match their index")
        starts = [0, *ends[:-1]]
        doc["datasets"] = {name: json.loads(blob[a:b]) for name, a, b in zip(names, starts, ends)}
    except CorruptionError:
        raise
    except (zstandard.ZstdError, ValueError, struct.error, KeyError, TypeError) as err:
        raise CorruptionError(f"{where}: manifest does not decode ({err})") from err
    return doc


def _index(value: Any, size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size


_JSON_TYPE = {"bool": bool, "int64": int, "string": str, "bytes": str, "timestamp_ns": int}


def _attr_value(raw: list) -> tuple[int, int, bytes]:
    """A version-1 attribute ``[type, value]`` in the value format of version 2."""
    tag, value = raw
    if tag in _JSON_TYPE and not isinstance(value, _JSON_TYPE[tag]) or tag == "int64" and \
            isinstance(value, bool):
        raise ValueError(f"attribute of type {tag!r} holds {value!r}")
    if tag == "bool":
        value = bool(value)
    elif tag == "int64":
        value = int(value)
    elif tag == "float64":
        value = float(value)
    elif tag == "bytes":
        value = base64.b64decode(value)
    elif tag == "timestamp_ns":
        value = np.datetime64(int(value), "ns")
    elif tag.startswith("np:"):
        value = np.dtype(tag[3:]).type(value)
    elif tag != "string":
        raise ValueError(f"unknown attribute type {tag!r}")
    return value_format.encode(value)


def _stat_bits(value: Any, schema: Schema) -> int:
    if value is None or schema.dtype.is_string:
        return 0
    if schema.dtype.kind == "float":
        return value_format.float_bits(float(value))
    if schema.dtype.kind == "uint":
        return int(np.uint64(value).view(np.int64))
    return int(value)


class _LegacySource:  # an atlas.core._index.Source
    """A version-1 segment: each "block" is one chunk record, a compressed frame followed by an
    uncompressed written mask of ``tail`` bytes."""

    decoded = False

    def __init__(self, storage, key: str, size: int, tails: np.ndarray):
        self.storage, self.key, self.size, self.tails = storage, key, size, tails
        self.cache_id = key
        self.base = 0

    def fetch(self, offsets, lengths):
        return self.storage.get_ranges(self.key, offsets, lengths, self.size)

    def tail(self, n: int) -> int:
        return int(self.tails[n - self.base])

    def where(self) -> str:
        return f"{self.storage.location}/{self.key}"


class LegacyStore:
    """A version-1 store as version-2 structures."""

    def __init__(self, storage, doc: dict, where: str):
        self.storage = storage
        self.doc = doc
        self.where = where
        self.schemas = [Schema.from_value(list(raw)) for raw in doc["schemas"]]
        self.segments = {name: [FileRef(checked(key, "segment", where, version=1), int(size))
                                for key, size, _rows in refs]
                         for name, refs in doc["segments"].items()}
        self.retired = [(checked(key, "segment", where, version=1), float(since))
                        for key, since in doc.get("retired", [])]
        self.root = Root(generation=int(doc["generation"]), codec=doc["codec"],
                         level=int(doc["level"]), block_size=DEFAULT_BLOCK_SIZE,
                         next_did=len(doc["datasets"]), next_slot=int(doc["next_slot"]),
                         next_schema=len(self.schemas),
                         retired=[(key, since, 0) for key, since in self.retired])
        self._indexes: dict[str, Any] = {}

    @classmethod
    def decode(cls, storage, data: bytes, where: str) -> "LegacyStore":
        doc = decode_manifest(data, where)
        try:
            return cls(storage, doc, where)
        except CorruptionError:
            raise
        except (ValueError, KeyError, TypeError) as err:
            raise CorruptionError(f"{where}: manifest does not decode ({err!r})") from err

    def keys(self) -> set[str]:
        out = {ref.key for refs in self.segments.values() for ref in refs}
        out.update(key for key, _since in self.retired)
        return out

    def tables(self) -> dict[tuple, Table]:
        """Every catalog table of the store, from its dataset records; CorruptionError when a
        record does not have the shape version 1 wrote."""
        try:
            return self._tables()
        except CorruptionError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, AttributeError,
                OverflowError) as err:
            raise CorruptionError(f"{self.where}: dataset records do not decode "
                                  f"({err!r})") from err

    def _tables(self) -> dict[tuple, Table]:
        rows: dict[tuple, dict[str, list]] = {}

        def add(section_id, key, **columns):
            table = rows.setdefault(section_id, {"key": []})
            table["key"].append(key)
            for name, value in columns.items():
                table.setdefault(name, []).append(value)

        seq = 0
        for did, (name, record) in enumerate(self.doc["datasets"].items()):
            add(("datasets",), did, name=name)
            for key, raw in record["attrs"].items():
                tag, num, data = _attr_value(raw)
                add(("attr", key), did, seq=seq, tag=tag, num=num, data=data)
                seq += 1
            for array, entry in sorted(record["arrays"].items(), key=lambda e: e[1]["slot"]):
                if not _index(entry["schema"], len(self.schemas)) or not _index(
                        entry["slot"], 2**62):
                    # a schema index of -1 would be the last schema
                    raise ValueError(f"array {array!r} of {name!r} names schema "
                                     f"{entry['schema']!r} and slot {entry['slot']!r}")
                schema = self.schemas[entry["schema"]]
                nulls, valid, lo, hi = entry["stats"] or (0, 0, None, None)
                add(("array", array), did, slot=entry["slot"], schema=entry["schema"],
                    nulls=nulls, valid=valid, min=_stat_bits(lo, schema),
                    max=_stat_bits(hi, schema),
                    smin=lo if schema.dtype.is_string and lo is not None else "",
                    smax=hi if schema.dtype.is_string and hi is not None else "")
                for key, raw in entry["attrs"].items():
                    tag, num, data = _attr_value(raw)
                    add(("array_attr", array, key), entry["slot"], seq=seq, tag=tag, num=num,
                        data=data)
                    seq += 1
        for i, schema in enumerate(self.schemas):
            add(("schemas",), i, json=value_format.dumps(schema.to_value()))
        self.root.next_seq = seq
        from atlas.format.catalog import table_kind

        out = {}
        for section_id, columns in rows.items():
            key = columns.pop("key")
            out[section_id] = Table.from_rows(table_kind(section_id), key, np.zeros(len(key), bool),
                                              columns)
        return out

    def catalog(self, files):
        """The store's catalog, every table already in memory."""
        from atlas.core._catalog import Catalog
        from atlas.core._tables import LayeredTable

        catalog = Catalog(self.storage, self.root, files)
        for section_id, table in self.tables().items():
            layered = LayeredTable(table.kind, lambda t=table: t)
            catalog.put_table(section_id, layered)
            layered.base()
        catalog.next_seq = self.root.next_seq
        catalog.dids()  # every name is in memory already (there are no parts to search)
        return catalog

    def segment_index(self, ref: FileRef) -> tuple[SegmentIndex, np.ndarray]:
        """A version-1 segment's index as a version-2 one (a block per chunk record), and the
        written-mask bytes that follow each record's frame."""
        where = f"{self.storage.location}/{ref.key}"
        size = ref.size
        if size < TRAILER.size + len(SEGMENT_HEADER):
            raise CorruptionError(f"{where}: segment too short for its trailer")
        trailer = bytes(self.storage.get_range(ref.key, size - TRAILER.size, TRAILER.size, size))
        magic, version, n_columns, n_rows, offset, length, crc, pad = TRAILER.unpack(trailer)
        if magic != TRAILER_MAGIC or pad != 0 or version != 1 or n_columns != len(COLUMNS):
            raise CorruptionError(f"{where}: not an atlas version-1 segment (bad trailer)")
        if length != n_rows * 8 * n_columns or offset + length + TRAILER.size != size:
            raise CorruptionError(f"{where}: index length {length} does not match {n_rows} rows")
        data = bytes(self.storage.get_range(ref.key, offset, length, size))
        if codecs.checksum(data) != crc:
            raise CorruptionError(f"{where}: segment index fails its checksum")
        flat = np.frombuffer(data, "<i8").astype(_I64)
        c = {name: flat[i * n_rows : (i + 1) * n_rows] for i, name in enumerate(COLUMNS)}
        if (np.any(c["offset"] < len(SEGMENT_HEADER)) or np.any(c["stored_length"] < 0)
                or np.any(c["mask_length"] < 0) or np.any(c["decoded_length"] < 0)
                or np.any(c["offset"] + c["stored_length"] + c["mask_length"] > offset)):
            raise CorruptionError(f"{where}: a chunk record lies outside the file")
        rows = np.arange(n_rows, dtype=_I64)
        index = SegmentIndex(
            {"offset": c["offset"], "stored": c["stored_length"] + c["mask_length"],
             "decoded": c["decoded_length"] + c["mask_length"], "codec": c["codec"],
             "crc": c["checksum"]},
            {"slot": c["slot"], "chunk": c["chunk"], "block": rows,
             "offset": np.zeros(n_rows, _I64), "length": c["decoded_length"],
             "mask": c["mask_length"]},
            {"row": rows, "nulls": c["nulls"], "valid": c["valid"], "min": c["min"],
             "max": c["max"]})
        return index, c["mask_length"]

    def index(self, array: str, files):
        """The chunk index of ``array`` over its version-1 segments."""
        from atlas.core._index import merge_indexes

        found = self._indexes.get(array)
        if found is None:
            refs = self.segments.get(array, [])
            parsed = [self.segment_index(ref) for ref in refs]
            sources = [_LegacySource(self.storage, ref.key, ref.size, tails)
                       for ref, (_ix, tails) in zip(refs, parsed)]
            base = 0
            for source, (ix, _tails) in zip(sources, parsed):
                source.base = base
                base += ix.n_blocks
            found = self._indexes[array] = merge_indexes([ix for ix, _ in parsed], sources)
        return found

    def verify(self, storage, report) -> None:
        """Every version-1 segment and chunk record against its checksum."""
        from atlas.core._read import CHECK_ONLY, fetch_block

        self.storage = storage
        self._indexes = {}
        for array, refs in self.segments.items():
            for ref in refs:
                report.segments += 1
                where = f"{storage.location}/{ref.key}"
                try:
                    index, _tails = self.segment_index(ref)
                except FileNotFoundError:
                    report.problems.append(f"{where}: segment file is missing")
                    continue
                except (CorruptionError, OSError) as err:
                    report.problems.append(str(err) if where in str(err) else f"{where}: {err}")
                    continue
                report.chunks += index.rows
            try:
                merged = self.index(array, None)
            except (CorruptionError, OSError):
                continue
            bad = 0
            for n in range(len(merged.block_offset)):
                try:
                    fetch_block(merged, n, CHECK_ONLY)
                except (CorruptionError, OSError):
                    bad += 1
            if bad:
                report.problems.append(f"{storage.location}: {bad} chunk records of {array!r} "
                                       "fail their checksum")
