"""The manifest: the single commit record of a store.

In memory it is a plain JSON-shaped document (dicts and lists), so opening a store costs one
decompress + ``json.loads`` and nothing per dataset until a dataset is used. Array schemas are
interned: each distinct (dtype, dims, shape, chunk_shape, fill) is stored once.

On disk::

    b"ATLMAN01", u32 format version, u32 crc32c(payload), u64 len(payload), payload
    payload = zstd(UTF-8 JSON document)

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
from typing import Any, NamedTuple

import zstandard

from atlas.codecs import checksum
from atlas.dtypes import DType, resolve_dtype
from atlas.errors import CorruptionError, FormatError

MANIFEST_KEY = "manifest.atlas"
MAGIC = b"ATLMAN01"
VERSION = 1
_HEADER = struct.Struct("<8sIIQ")


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
    def datasets(self) -> dict[str, dict]:
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
        payload = zstandard.ZstdCompressor(level=3).compress(
            json.dumps(self.doc, separators=(",", ":"), allow_nan=True).encode("utf-8")
        )
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
            doc = json.loads(zstandard.ZstdDecompressor().decompress(payload))
        except (zstandard.ZstdError, ValueError) as err:
            raise CorruptionError(f"{where}: manifest does not decode ({err})") from err
        return cls(doc)


def _schema_key(schema: Schema) -> tuple:
    """A hashable key equal for equal schemas (a NaN fill equals a NaN fill; 0 and 0.0 differ,
    as they do in the JSON document)."""
    fill = schema.fill
    fill_key = ("nan",) if isinstance(fill, float) and fill != fill else (type(fill).__name__,
                                                                          fill)
    return (schema.dtype.name, schema.dims, schema.shape, schema.chunk_shape, fill_key)
