"""The root: the commit record (``manifest.atlas``, the only key that ever changes).

It is small whatever the size of the store: counters, store options, and the lists of the
immutable files that make up the commit (catalog parts and segments). A commit writes new files
for what changed and a new root; an old root stays readable as long as its files exist.

On disk (all integers little-endian)::

    b"ATLMAN01" | u32 format version (2; 3 when it lists linked files; 4 when it names
               | retired lists; 6 when it shuffles) | u32 crc32c(payload)
               | u64 len(payload) | payload
    payload = one zstd frame of the UTF-8 JSON document below

The header is the one of format version 1, whose manifest carried version 1 and whose reader
lives in ``atlas.format.legacy``. ``docs/format.md`` is the full specification.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import zstandard

from atlas.codecs import checksum, decompress_frame
from atlas.errors import CorruptionError, FormatError
from atlas.format.keys import all_data_keys, checked, is_data_key

MAGIC = b"ATLMAN01"
VERSION = 6  # the newest this atlas reads and writes
# Version 3 is version 2 plus the root's ``linked`` list (and segments that link blocks). A
# root is written as version 3 only while it lists linked files: an atlas that knows only
# version 2 then refuses the store (it would drop the list, and its sweep delete those files).
LINKED_VERSION = 3
# Version 4 is version 3 plus the root's ``retired_lists`` (atlas.format.retired), written
# only while the root names some, for the same reason.
RETIRED_LISTS_VERSION = 4
# Version 5 is version 4 plus ``shuffle`` (blocks whose codec id has shuffle bits, see
# atlas.codecs): written by every store created with it, which an older atlas must refuse.
SHUFFLE_VERSION = 5
# Version 6 is version 5 whose segments' shuffled blocks carry crcs that cover their codec byte
# (atlas.format.segment.CODEC_IN_CRC): every store that shuffles is written as 6; a version-5
# root is still read (its older segments say which crc they carry).
CODEC_CRC_VERSION = 6
HEADER = struct.Struct("<8sIIQ")
MAX_ROOT_BYTES = 1 << 28  # decoded; a root claiming more is corrupt
DEFAULT_BLOCK_SIZE = 1 << 20
# versions older than this (and not among the last KEEP_LAST, nor tagged) may be expired
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
DEFAULT_KEEP_LAST = 1


@dataclass(frozen=True)
class FileRef:
    """One immutable file of a commit: its key, its size, and its merge level (a file written by
    a flush is level 0; merging files of level n gives one of level n + 1)."""

    key: str
    size: int
    level: int = 0
    # segments only: (first, shift) when the slots of this file were numbered before a rebase
    # or by a forked writer: every slot >= first in its index is read as slot + shift
    remap: tuple[int, int] | None = None

    def to_json(self) -> list:
        if self.remap is None:
            return [self.key, self.size, self.level]
        return [self.key, self.size, self.level, *self.remap]


@dataclass
class Root:
    generation: int
    codec: str
    level: int
    block_size: int = DEFAULT_BLOCK_SIZE
    shuffle: bool = False  # new blocks of values wider than a byte are shuffled
    commit: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent: str | None = None
    time: float = field(default_factory=time.time)
    message: str | None = None
    next_did: int = 0
    next_slot: int = 0
    next_schema: int = 0
    next_seq: int = 0
    parts: list[FileRef] = field(default_factory=list)
    segments: dict[str, list[FileRef]] = field(default_factory=dict)
    # files this or an earlier commit replaced: (key, when, generation of the replacing commit);
    # older versions may still read them, so they go only once those versions are expired
    retired: list[tuple[str, float, int]] = field(default_factory=list)
    # segments a merge took in whose blocks a live segment still reads where they lie (it
    # links them): kept like live files until no live segment links them, then retired
    linked: list[FileRef] = field(default_factory=list)
    # datasets this commit added, changed and deleted (what history() shows)
    changes: dict[str, int] = field(default_factory=dict)
    retention: tuple[float, int] = (DEFAULT_RETENTION_SECONDS, DEFAULT_KEEP_LAST)
    created: float | None = None  # when the store was created (kept by every commit)
    delta: str | None = None  # the catalog part holding what this commit changed, if any
    # files holding older retired entries (atlas.format.retired): ``retired`` keeps the newest
    retired_lists: list[FileRef] = field(default_factory=list)

    @property
    def format_version(self) -> int:
        """2; 3 while the root lists linked files (see LINKED_VERSION); 4 while it names
        retired lists; 6 when its store shuffles (5 before CODEC_CRC_VERSION)."""
        return CODEC_CRC_VERSION if self.shuffle else RETIRED_LISTS_VERSION if \
            self.retired_lists else LINKED_VERSION if self.linked else 2

    def successor(self, **changes: Any) -> "Root":
        """The root of the next commit on top of this one."""
        fields = {"generation": self.generation + 1, "commit": uuid.uuid4().hex,
                  "parent": self.commit, "time": time.time(), "message": None,
                  "changes": {}, "delta": None}
        fields.update(changes)
        return replace(self, **fields)

    def live_keys(self) -> set[str]:
        """The files this root reads: its parts, segments and linked files."""
        out = {p.key for p in self.parts}
        out.update(s.key for refs in self.segments.values() for s in refs)
        out.update(s.key for s in self.linked)
        return out

    def twice_listed(self) -> str | None:
        """A file this root lists twice (live twice, or live and retired), or None: no reader
        accepts such a root (a live file also "retired" would be deleted by a later flush)."""
        seen: set[str] = set()
        for key in [*(p.key for p in self.parts),
                    *(s.key for refs in self.segments.values() for s in refs),
                    *(s.key for s in self.linked), *(entry[0] for entry in self.retired),
                    *(r.key for r in self.retired_lists)]:
            if key in seen:
                return key
            seen.add(key)
        return None

    def keys(self) -> set[str]:
        """Every file this root names: :meth:`live_keys`, the retired ones its inline list
        holds and its retired lists (not the entries of those: see
        ``atlas.core._maintain.referenced_keys``)."""
        out = self.live_keys()
        out.update(entry[0] for entry in self.retired)
        out.update(r.key for r in self.retired_lists)
        return out

    def to_json(self) -> dict:
        doc = {
            "format": "atlas", "version": self.format_version, "generation": self.generation,
            "commit": self.commit, "parent": self.parent, "time": self.time,
            "message": self.message, "codec": self.codec, "level": self.level,
            "block_size": self.block_size,
            "next": {"did": self.next_did, "slot": self.next_slot, "schema": self.next_schema,
                     "seq": self.next_seq},
            "parts": [p.to_json() for p in self.parts],
            "segments": {name: [s.to_json() for s in refs]
                         for name, refs in self.segments.items()},
            "retired": [list(entry) for entry in self.retired],
            "changes": self.changes,
            "retention": {"older_than": self.retention[0], "keep_last": self.retention[1]},
            "created": self.created,
            "delta": self.delta,
        }
        if self.shuffle:  # absent from stores that do not shuffle
            doc["shuffle"] = True
        if self.linked:  # absent from stores that never linked a block
            doc["linked"] = [s.to_json() for s in self.linked]
        if self.retired_lists:
            doc["retired_lists"] = [r.to_json() for r in self.retired_lists]
        return doc

    def encode(self) -> bytes:
        raw = json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False,
                         allow_nan=False).encode("utf-8")
        payload = zstandard.ZstdCompressor(level=3).compress(raw)
        return HEADER.pack(MAGIC, self.format_version, checksum(payload), len(payload)) + payload


def read_header(data: bytes, where: str) -> int:
    """The format version of a commit record; FormatError when it is not one we know."""
    if len(data) < HEADER.size or data[:8] != MAGIC:
        raise FormatError(f"{where}: not an atlas store root (bad magic)")
    _magic, version, _crc, _length = HEADER.unpack_from(data)
    if version < 1:
        raise FormatError(f"{where}: format version {version} is not a valid version")
    if version > VERSION:
        raise FormatError(f"{where}: format version {version} is newer than this atlas "
                          f"understands ({VERSION}); upgrade atlas")
    return version


def checked_payload(data: bytes, where: str) -> bytes:
    """The payload of a commit record of either version, after its length and checksum."""
    _magic, _version, crc, length = HEADER.unpack_from(data)
    payload = data[HEADER.size :]
    if len(payload) != length or checksum(payload) != crc:
        raise CorruptionError(f"{where}: commit record fails its checksum")
    return payload


@dataclass(frozen=True)
class RootHead:
    """The first fields of a root, read without decoding the rest (its lists of files run to
    thousands of entries once versions are kept): enough to find an earlier version."""

    generation: int
    commit: str
    time: float
    data: bytes
    where: str

    def full(self) -> "Root":
        root = decode(self.data, self.where)
        if (root.generation, root.commit, root.time) != (self.generation, self.commit,
                                                         self.time):
            raise CorruptionError(f"{self.where}: the commit record's first fields say "
                                  f"generation {self.generation}, its document "
                                  f"{root.generation}")  # two keys of one name: forged
        return root


# what every writer puts first in the document (see Root.to_json)
_HEAD = re.compile(rb'\{"format":"atlas","version":[2-6],"generation":([0-9]{1,18}),'
                   rb'"commit":"([0-9a-f]{32})","parent":(?:null|"[0-9a-f]{32}"),'
                   rb'"time":(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?),')
HEAD_BYTES = 256
MAX_TIME = 253402300800  # 10000-01-01: the first time a datetime cannot hold
MAX_INT = 2**62  # counters, sizes and counts a root holds stay below this


def head(data: bytes, where: str) -> "RootHead | Root":
    """The head of a version-2 to -6 root, after its checksum; the whole root where its document
    does not start as writers write it."""
    payload = checked_payload(data, where)
    try:  # the first block of the frame only
        start = zstandard.ZstdDecompressor().stream_reader(payload).read(HEAD_BYTES)
    except zstandard.ZstdError:
        start = b""
    found = _HEAD.match(start)
    when = None if found is None else float(found.group(3))
    if when is None or not 0 <= when < MAX_TIME:
        return decode(data, where)  # which says what is wrong with it
    return RootHead(int(found.group(1)), found.group(2).decode(), when, data, where)


def decode(data: bytes, where: str) -> Root:
    """A version-2 or -3 root; CorruptionError for anything malformed (checksum, JSON, types,
    keys), FormatError for a version this atlas does not know."""
    version = read_header(data, where)
    payload = checked_payload(data, where)
    raw = decompress_frame(payload, where, MAX_ROOT_BYTES)  # bounded before it is allocated
    try:
        doc = json.loads(bytes(raw))
        counters = doc["next"]
        root = Root(
            generation=_int(doc["generation"]), codec=_str(doc["codec"]),
            level=_int(doc["level"], -131072), block_size=_int(doc["block_size"], 1),
            commit=_str(doc["commit"]), parent=doc["parent"], time=_time(doc["time"]),
            message=doc["message"], next_did=_int(counters["did"]),
            next_slot=_int(counters["slot"]), next_schema=_int(counters["schema"]),
            next_seq=_int(counters["seq"]),
            parts=[_ref(r, "part", where) for r in _list(doc["parts"], "parts")],
            segments={_str(name): [_ref(r, "segment", where) for r in _list(refs, name)]
                      for name, refs in doc["segments"].items()},
            retired=_retired_list(_list(doc["retired"], "retired"), where),
            linked=[_ref(r, "segment", where) for r in _list(doc.get("linked", []), "linked")],
            changes={_str(k): _int(v) for k, v in doc.get("changes", {}).items()},
            retention=_retention(doc.get("retention")),
            created=None if doc.get("created") is None else _time(doc["created"]),
            delta=None if doc.get("delta") is None else checked(doc["delta"], "part", where),
            retired_lists=[_ref(r, "retired list", where)
                           for r in _list(doc.get("retired_lists", []), "retired_lists")],
            shuffle=_bool(doc.get("shuffle", False)))
        expected = {root.format_version, SHUFFLE_VERSION} if root.shuffle else \
            {root.format_version}
        if doc.get("format") != "atlas" or doc.get("version") not in expected or \
                doc["version"] != version:
            raise ValueError(f"not an atlas version-{version} document (version 6 or 5 "
                             "exactly when it shuffles, else 4 exactly when it names retired "
                             "lists, else 3 exactly when it lists linked files)")
        if root.parent is not None:
            _str(root.parent)
        if root.message is not None:
            _str(root.message)
        if root.delta is not None and root.delta not in {p.key for p in root.parts} | {
                entry[0] for entry in root.retired}:
            raise ValueError("the delta part is not one of the root's parts")
        if root.twice_listed() is not None:
            raise ValueError("a file is listed twice (live twice, or live and retired)")
    except CorruptionError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptionError(f"{where}: commit record does not decode ({err!r})") from err
    from atlas.codecs import CODECS

    if root.codec not in CODECS:
        raise CorruptionError(f"{where}: unknown codec {root.codec!r}")
    return root


def _int(value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < MAX_INT:
        raise ValueError(f"expected an integer >= {low}, got {value!r}")
    return value


def _time(value: Any) -> float:
    """A Unix time: a JSON number (not a string or a bool that float() would take) from 1970
    to year 9999, so that every version's time converts to a datetime."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value < MAX_TIME):
        raise ValueError(f"expected a time in seconds from 1970 to year 9999, got {value!r}")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _ref(raw: Any, kind: str, where: str) -> FileRef:
    key, size, level, *remap = raw
    if remap and (kind != "segment" or len(remap) != 2):
        raise ValueError(f"a {kind} reference [key, size, level] has extra items {remap!r}")
    return FileRef(checked(key, kind, where), _int(size), _int(level),
                   (_int(remap[0]), _int(remap[1])) if remap else None)


def check_retired(raw: Any, where: str) -> list[tuple[str, float, int]]:
    """Retired entries as a root or a retired list holds them, checked; CorruptionError
    naming what is wrong."""
    try:
        return _retired_list(raw, where)
    except CorruptionError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise CorruptionError(f"{where}: a retired entry does not decode ({err!r})") from err


def _list(raw: Any, what: str) -> list:
    """A list the root holds (iterating a string or a dict instead would read as entries)."""
    if type(raw) is not list:
        raise ValueError(f"{what} must be a list, got {type(raw).__name__}")
    return raw


def _retired_list(raw: Any, where: str) -> list[tuple[str, float, int]]:
    """The ``retired`` entries, checked. It grows with the versions kept and every open reads
    it, so entries of the usual shape ([key, time, generation]) are checked a column at a
    time; anything else goes entry by entry, which says what is wrong."""
    if type(raw) is list and set(map(type, raw)) <= {list} and set(map(len, raw)) <= {3}:
        keys, times, generations = zip(*raw) if raw else ((), (), ())
        if (set(map(type, times)) <= {float} and all(map(math.isfinite, times))
                and set(map(type, generations)) <= {int}
                and (not raw or (min(generations) >= 0 and max(generations) < 2**62))
                and all_data_keys(keys)):
            return list(zip(keys, times, generations))
    return [_retired(entry, where) for entry in raw]


def _retired(entry: Any, where: str) -> tuple[str, float, int]:
    key, since, *generation = entry
    # an upgrade retires the segments of format version 1, so both grammars are allowed here
    if not is_data_key(key):
        raise CorruptionError(f"{where}: names retired key {key!r}, which is not a key this "
                              "format uses")
    return key, _time(since), _int(generation[0]) if generation else 0


def _retention(raw: Any) -> tuple[float, int]:
    if raw is None:
        return DEFAULT_RETENTION_SECONDS, DEFAULT_KEEP_LAST
    older_than = _time(raw["older_than"])
    if not older_than >= 0:
        raise ValueError(f"retention older_than must be >= 0, got {older_than!r}")
    return older_than, _int(raw["keep_last"], 1)
