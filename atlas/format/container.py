"""The file container of segments and catalog parts: a payload, named sections, a footer.

Layout (all integers little-endian)::

    magic (8 bytes)                      b"ATLSEG02" (segment) or b"ATLCAT02" (catalog part)
    payload                              segments: the compressed blocks; parts: nothing
    section 0 | section 1 | ...          typed columns (atlas.format.columns): one zstd frame,
                                         or (catalog parts) one frame per column
    footer                               a zstd frame of UTF-8 JSON (below)
    trailer (40 bytes)                   b"ATLFOOT2" | u32 version (2) | u32 crc32c(footer)
                                         | u64 footer offset | u64 footer length
                                         | u64 footer decoded length

    footer = {"sections": [[id, offset, stored length, decoded length, rows, crc32c, spec], ...],
              ...what the file kind adds}

A section ``id`` is a JSON list naming the table (``["array", "temp"]``); ``spec`` is the column
spec of ``atlas.format.columns``. Each section carries its own crc32c, so a reader fetches and
checks only the sections it uses.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from atlas.codecs import checksum, decompress_zstd
from atlas.errors import CorruptionError
from atlas.format.columns import Frame, check_spec, decode_section, encode_section, \
    start_framed

TRAILER = struct.Struct("<8sIIQQQ")
TRAILER_MAGIC = b"ATLFOOT2"
VERSION = 2
MAX_FOOTER_BYTES = 1 << 30  # a footer claiming more is corrupt, not allocated
FOOTER_PROBE = 64 << 10  # bytes read from a file's end to get its trailer and footer at once
# the footer field naming the file's own key (relative to the store), where written: a file
# copied over another (from another store, or a retired one of the same size) is refused
FILE_KEY = "key"


@dataclass
class SectionRef:
    """Where one section lies in its file and how to decode it."""

    offset: int
    stored: int
    decoded: int
    rows: int
    crc: int
    spec: list


@dataclass
class Footer:
    """A parsed footer: the sections by id (a tuple) and what else the file kind stored, plus
    the file's last bytes as read with it (small files' sections come from them, unread)."""

    sections: dict[tuple, SectionRef]
    extra: dict[str, Any]
    end_of_payload: int  # where the first section starts (= the footer offset if none)
    tail: Any = b""
    tail_start: int = 0

    def reader(self, read: Callable[[int, int], Any]) -> Callable[[int, int], Any]:
        """``read(offset, length)`` that serves what the tail holds without reading."""
        tail, start = self.tail, self.tail_start

        def read_or_tail(offset: int, length: int):
            if offset >= start and offset + length <= start + len(tail):
                return tail[offset - start : offset - start + length]
            return read(offset, length)

        return read_or_tail


class ContainerWriter:
    """Builds a container in a file through ``write(data) -> offset``.

    The caller writes the magic and the payload first through the same ``write``, then adds
    sections, then :meth:`finish`."""

    def __init__(self, write: Callable[[bytes], int]):
        self._write = write
        self.sections: list[list] = []
        self._queue: deque = deque()  # sections begun, not written yet: (id, rows, result)

    def add(self, section_id: tuple, columns, rows: int, framed: bool = False) -> None:
        if framed:
            self.begin(section_id, columns, rows)
        else:
            encoded = encode_section(columns)
            self._queue.append((section_id, rows, lambda: encoded))
        self.drain()

    def begin(self, section_id: tuple, columns, rows: int) -> None:
        """Start encoding a framed section on the worker threads; :meth:`drain` (or
        :meth:`finish`) writes it, after the sections begun before it."""
        self._queue.append((section_id, rows, start_framed(columns)))

    def drain(self, keep: int = 0) -> None:
        """Write the sections begun, in order, until ``keep`` are left encoding."""
        while len(self._queue) > keep:
            section_id, rows, result = self._queue.popleft()
            stored, spec, decoded = result()
            offset = self._write(stored)
            self.sections.append([list(section_id), offset, len(stored), decoded, rows,
                                  checksum(stored), spec])

    def finish(self, **extra: Any) -> None:
        import zstandard

        self.drain()
        doc = dict(extra, sections=self.sections)
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False,
                         allow_nan=False).encode("utf-8")
        footer = zstandard.ZstdCompressor(level=3).compress(raw)
        offset = self._write(footer)
        self._write(TRAILER.pack(TRAILER_MAGIC, VERSION, checksum(footer), offset, len(footer),
                                 len(raw)))


def parse_footer(tail, tail_start: int, size: int, read: Callable[[int, int], Any],
                 where: str) -> Footer:
    """The footer of a file of ``size`` bytes, given its last bytes ``tail`` (which start at
    ``tail_start``) and ``read(offset, length)`` for anything before them."""
    if size < TRAILER.size or len(tail) < TRAILER.size:
        raise CorruptionError(f"{where}: file too short for its trailer")
    magic, version, crc, offset, length, decoded = TRAILER.unpack(
        bytes(tail[len(tail) - TRAILER.size :]))
    if magic != TRAILER_MAGIC:
        raise CorruptionError(f"{where}: not an atlas file (bad trailer magic)")
    if version != VERSION:
        raise CorruptionError(f"{where}: file version {version} not understood "
                              f"(expected {VERSION})")
    if offset + length != size - TRAILER.size or decoded > MAX_FOOTER_BYTES:
        raise CorruptionError(f"{where}: trailer does not match the file size")
    if offset >= tail_start:
        stored = tail[offset - tail_start : offset - tail_start + length]
    else:
        stored = read(offset, length)
    if len(stored) != length or checksum(stored) != crc:
        raise CorruptionError(f"{where}: footer fails its checksum")
    try:
        doc = json.loads(bytes(decompress_zstd(stored, decoded, where)))
        sections = {}
        first = offset
        for entry in doc.pop("sections"):
            section_id, s_offset, stored_len, decoded_len, rows, s_crc, spec = entry
            ref = SectionRef(int(s_offset), int(stored_len), int(decoded_len), int(rows),
                             int(s_crc), spec)
            if (ref.offset < 8 or ref.stored < 0 or ref.offset + ref.stored > offset
                    or ref.rows < 0):
                raise ValueError(f"section {section_id} lies outside the file")
            first = min(first, ref.offset)
            sections[tuple(section_id)] = ref
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise CorruptionError(f"{where}: footer does not decode ({err})") from err
    return Footer(sections, doc, first, tail, tail_start)


def check_file_key(footer: Footer, key: str, where: str) -> None:
    """CorruptionError when the footer names a key other than the one the file was read
    under (files written before the field existed name none)."""
    named = footer.extra.get(FILE_KEY)
    if named is not None and named != key:
        raise CorruptionError(f"{where}: file was written as {named!r}: another file copied "
                              "or moved over this one")


def read_section(ref: SectionRef, stored, where: str, joined: bool = False) -> dict[str, Any]:
    """Check and decode one section from its stored bytes (``joined``: text columns stored
    joined by NUL stay joined bytes)."""
    if len(stored) != ref.stored or checksum(stored) != ref.crc:
        raise CorruptionError(f"{where}: section fails its checksum")
    return decode_section(stored, ref.spec, ref.rows, ref.decoded, where, joined)


def section_frames(ref: SectionRef, where: str) -> list[Frame] | None:
    """The column frames of a framed section, offsets from the start of the file (None for a
    section stored as one frame)."""
    frames = check_spec(ref.spec, ref.decoded, ref.rows, where, ref.offset)
    if frames is None:
        return None
    if sum(f.stored for f in frames) != ref.stored:
        raise CorruptionError(f"{where}: section frames do not fill the section")
    return frames


class LockedFile:
    """A new immutable file written at explicit offsets, locked until its commit.

    Writes go to explicit offsets, so a write that fails part-way (a full disk) leaves nothing
    that counts: the next write, or a retry, writes over it. Until :meth:`release` the file
    holds a shared ``flock``: orphan removal skips files it cannot lock exclusively, so a live
    writer's not yet committed file is never taken for a crashed writer's leftover.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd = _create_locked(path)
        self._closer = weakref.finalize(self, os.close, self._fd)
        self.size = 0

    def write(self, data) -> int:
        """Write ``data`` at ``self.size`` (whole, or raise); returns where it starts."""
        view = memoryview(data).cast("B")
        offset, done = self.size, 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)
        self.size = offset + len(view)
        return offset

    def pread(self, offset: int, length: int) -> bytes:
        if self._closer.alive:
            return os.pread(self._fd, length, offset)
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), length, offset)

    def truncate(self) -> None:
        """Drop what a failed, longer attempt left beyond ``size``."""
        os.ftruncate(self._fd, self.size)

    def release(self) -> None:
        """The file is committed (or given up): drop the lock and the descriptor."""
        self._closer()


def _create_locked(path: str) -> int:
    """Create ``path`` and hold a shared lock on it, making sure the locked file is still the
    one at ``path`` (an orphan sweep may remove it between the create and the lock)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                     0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
