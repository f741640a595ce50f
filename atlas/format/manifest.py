"""The manifest: the single commit record of a store.

In memory it is a JSON-shaped document (dicts and lists). Array schemas are interned: each
distinct (dtype, dims, shape, chunk_shape, fill) is stored once. Dataset records are kept apart
from the rest as one JSON text each, parsed the first time a dataset is used: opening a store
of 10,000 datasets parses the names, not 10,000 records.

On disk::

    b"ATLMAN01", u32 format version, u32 crc32c(payload), u64 len(payload), payload
    payload = zstd(u64 len(header) | header | records)
    header  = UTF-8 JSON: the document with "datasets" replaced by {"names": [...], "ends": [...]}
    records = the UTF-8 JSON texts of the dataset records, back to back; record i ends at ends[i]

Document (see ``docs/format.md``)::

    {"format": "atlas", "version": 1, "generation": int, "codec": str, "level": int,
     "next_slot": int, "schemas": [[dtype, dims, shape, chunk_shape, fill], ...],
     "datasets": {name: {"attrs": {key: [type, value]},
                         "arrays": {name: {"slot": int, "schema": int,
                                           "attrs": {key: [type, value]},
                                           "stats": [nulls, valid, min, max] | null}}}},
     "segments": {array name: [[key, size, rows], ...]},
     "retired": [[key, unix time retired], ...]}  (segments compact() replaced, kept a while)
"""

from __future__ import annotations

import json
import struct
from collections.abc import MutableMapping
from typing import Any, Iterator, NamedTuple

import zstandard

from atlas.codecs import checksum, decompress_frame
from atlas.dtypes import DType, resolve_dtype
from atlas.errors import CorruptionError, FormatError
from atlas.storage._keys import check_key

MANIFEST_KEY = "manifest.atlas"
MAGIC = b"ATLMAN01"
VERSION = 1
_HEADER = struct.Struct("<8sIIQ")
_U64 = struct.Struct("<Q")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


_ABSENT = object()


class DatasetRecords(MutableMapping):
    """Dataset records by name, in creation order; a record's JSON is parsed on first access."""

    def __init__(self, records: dict | None = None, blob: bytes = b""):
        # values: a parsed record (dict), or the (start, end) of its JSON text in ``blob``
        self._items: dict[str, Any] = dict(records or {})
        self._blob = blob

    def __getitem__(self, name: str) -> dict:
        value = self._items[name]
        if isinstance(value, tuple):
            value = self._items[name] = json.loads(self._blob[value[0] : value[1]])
        return value

    def get(self, name: str, default=None):
        """``Mapping.get`` without its exception round trip (stacked reads call it per name)."""
        value = self._items.get(name, _ABSENT)
        if value is _ABSENT:
            return default
        if isinstance(value, tuple):
            value = self._items[name] = json.loads(self._blob[value[0] : value[1]])
        return value

    def __setitem__(self, name: str, record: dict) -> None:
        self._items[name] = record

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def parsed(self) -> Iterator[dict]:
        """The records parsed so far: the only ones a handle can have changed."""
        return (value for value in self._items.values() if not isinstance(value, tuple))

    def texts(self) -> Iterator[tuple[str, bytes]]:
        """(name, JSON text) of every record, re-encoding only those that were parsed."""
        for name, value in self._items.items():
            if isinstance(value, tuple):
                yield name, self._blob[value[0] : value[1]]
            else:
                yield name, _dumps(value).encode("utf-8")


class Schema(NamedTuple):
    """The shape of one array; shared by every array defined the same way."""

    dtype: DType
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    fill: Any  # the parsed fill (JSON scalar) or None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def to_json(self) -> list:
        return [self.dtype.name, list(self.dims), list(self.shape), list(self.chunk_shape),
                self.fill]

    @classmethod
    def from_json(cls, raw: list) -> "Schema":
        dtype, dims, shape, chunk_shape, fill = raw
        return cls(resolve_dtype(dtype), tuple(dims), tuple(shape), tuple(chunk_shape), fill)


class Manifest:
    """A manifest document plus the parsed, interned schemas."""

    def __init__(self, doc: dict):
        if not isinstance(doc["datasets"], DatasetRecords):
            doc = dict(doc, datasets=DatasetRecords(doc["datasets"]))
        self.doc = doc
        self.schemas = [Schema.from_json(s) for s in doc["schemas"]]
        self._schema_ids = {_schema_key(s): i for i, s in enumerate(self.schemas)}

    @classmethod
    def new(cls, codec: str, level: int) -> "Manifest":
        return cls({"format": "atlas", "version": VERSION, "generation": 0, "codec": codec,
                    "level": level, "next_slot": 0, "schemas": [], "datasets": {},
                    "segments": {}})

    @property
    def generation(self) -> int:
        return self.doc["generation"]

    @property
    def datasets(self) -> DatasetRecords:
        return self.doc["datasets"]

    @property
    def segments(self) -> dict[str, list]:
        return self.doc["segments"]

    def intern(self, schema: Schema) -> int:
        key = _schema_key(schema)
        found = self._schema_ids.get(key)
        if found is None:
            found = self._schema_ids[key] = len(self.schemas)
            self.doc["schemas"].append(schema.to_json())
            self.schemas.append(schema)
        return found

    def new_slot(self) -> int:
        slot = self.doc["next_slot"]
        self.doc["next_slot"] = slot + 1
        return slot

    def encode(self) -> bytes:
        names, texts, ends, end = [], [], [], 0
        for name, text in self.doc["datasets"].texts():
            names.append(name)
            texts.append(text)
            end += len(text)
            ends.append(end)
        header = _dumps(dict(self.doc, datasets={"names": names, "ends": ends})).encode("utf-8")
        payload = zstandard.ZstdCompressor(level=3).compress(
            b"".join([_U64.pack(len(header)), header, *texts]))
        return _HEADER.pack(MAGIC, VERSION, checksum(payload), len(payload)) + payload

    @classmethod
    def decode(cls, data: bytes, where: str) -> "Manifest":
        if len(data) < _HEADER.size or data[:8] != MAGIC:
            raise FormatError(f"{where}: not an atlas manifest")
        _magic, version, crc, length = _HEADER.unpack_from(data)
        if version < 1:
            raise FormatError(f"{where}: manifest version {version} is not a valid version")
        if version > VERSION:
            raise FormatError(f"{where}: manifest version {version} is newer than this atlas "
                              f"understands ({VERSION}); upgrade atlas")
        payload = data[_HEADER.size :]
        if len(payload) != length or checksum(payload) != crc:
            raise CorruptionError(f"{where}: manifest fails its checksum")
        try:
            raw = decompress_frame(payload, where)  # bounded: refuses a bomb before allocating
            (header_length,) = _U64.unpack_from(raw)
            doc = json.loads(raw[_U64.size : _U64.size + header_length])
            blob = raw[_U64.size + header_length :]
            names, ends = doc["datasets"]["names"], doc["datasets"]["ends"]
            if len(names) != len(ends) or (ends and ends[-1] != len(blob)):
                raise ValueError("dataset records do not match their index")
        except (zstandard.ZstdError, ValueError, struct.error, KeyError, TypeError) as err:
            raise CorruptionError(f"{where}: manifest does not decode ({err})") from err
        starts = [0, *ends[:-1]]
        doc["datasets"] = DatasetRecords(dict(zip(names, zip(starts, ends))), blob)
        check_referenced_keys(doc, where)
        return cls(doc)


def check_referenced_keys(doc: dict, where: str) -> None:
    """Every key a manifest names (segments, retired segments) is a segment key in the key
    grammar: a forged ``../victim`` or ``manifest.atlas`` is never read, listed or deleted."""
    try:
        keys = [ref[0] for refs in doc["segments"].values() for ref in refs]
        keys += [item[0] for item in doc.get("retired", ())]
    except (AttributeError, TypeError, KeyError, IndexError) as err:
        raise CorruptionError(f"{where}: manifest segment lists are malformed ({err!r})") from err
    for key in keys:
        check_key(key, where)
        if not (key.startswith("segments/") and key.endswith(".seg") and key.count("/") == 2):
            raise CorruptionError(f"{where}: {key!r} is not a segment key "
                                  "(segments/<array>/<name>.seg)")


def _schema_key(schema: Schema) -> tuple:
    """A hashable key equal for equal schemas (a NaN fill equals a NaN fill; 0 and 0.0 differ,
    as they do in the JSON document)."""
    fill = schema.fill
    fill_key = ("nan",) if isinstance(fill, float) and fill != fill else (type(fill).__name__,
                                                                          fill)
    return (schema.dtype.name, schema.dims, schema.shape, schema.chunk_shape, fill_key)
