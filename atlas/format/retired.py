"""Retired lists: the retired entries a root no longer carries inline.

A root lists every file that a commit replaced while a retained version may still read it
(``Root.retired``: key, when, generation of the replacing commit). Under the default retention
(7 days) that list grows with every commit, and the root is rewritten by every commit and read
by every open. So a root keeps only its newest entries inline; older ones move, a few hundred at
a time, into immutable retired-list files that the root names (``Root.retired_lists``). Only
writers read them (to expire versions, sweep orphans, report usage); no reader of a version
does, and no version record names them.

On disk (all integers little-endian)::

    b"ATLRET01" | u32 version (1) | u32 crc32c(payload) | u64 len(payload) | payload
    payload = one zstd frame of the UTF-8 JSON array [[key, when, generation], ...]

``docs/format.md`` is the full specification.
"""

from __future__ import annotations

import json
import struct

import zstandard

from atlas.codecs import checksum, decompress_frame
from atlas.errors import CorruptionError

MAGIC = b"ATLRET01"
VERSION = 1
HEADER = struct.Struct("<8sIIQ")
MAX_LIST_BYTES = 1 << 28  # decoded; a list claiming more is corrupt


def encode(entries: list[tuple[str, float, int]]) -> bytes:
    raw = json.dumps([list(entry) for entry in entries], separators=(",", ":"),
                     allow_nan=False).encode("utf-8")
    payload = zstandard.ZstdCompressor(level=3).compress(raw)
    return HEADER.pack(MAGIC, VERSION, checksum(payload), len(payload)) + payload


def decode(data, where: str) -> list[tuple[str, float, int]]:
    """The entries of a retired list; CorruptionError for anything malformed."""
    from atlas.format.root import check_retired

    data = bytes(data)
    if len(data) < HEADER.size:
        raise CorruptionError(f"{where}: too short for a retired list")
    magic, version, crc, length = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CorruptionError(f"{where}: not a retired list of version {VERSION} (magic "
                              f"{magic!r}, version {version})")
    payload = data[HEADER.size:]
    if len(payload) != length or checksum(payload) != crc:
        raise CorruptionError(f"{where}: retired list fails its checksum")
    raw = decompress_frame(payload, where, MAX_LIST_BYTES)
    try:
        doc = json.loads(bytes(raw))
    except ValueError as err:
        raise CorruptionError(f"{where}: retired list does not decode ({err})") from None
    if not isinstance(doc, list) or not all(type(e) is list and len(e) == 3 for e in doc):
        raise CorruptionError(f"{where}: retired list is not a list of [key, time, "
                              "generation] entries")
    return check_retired(doc, where)
