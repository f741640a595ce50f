"""Typed columns as one compressed section: how tables are stored in segments and catalog parts.

A section holds the columns of one table, all of the same row count, each as a ``kind``:

    i8    int64, little-endian
    i8d   int64 stored as differences from the previous value (sorted keys, offsets: the
          differences are small and repeat, so they compress to almost nothing)
    f8    int64 or float64 bits, bytes shuffled (byte 0 of every value, then byte 1, ...), so
          that values sharing their high bytes compress
    i4    int32, little-endian;  u4  uint32;  u1  uint8
    txt   UTF-8 texts: a u8 flag, then either (flag 0) the texts joined by NUL, or (flag 1)
          i8d end offsets followed by the concatenated bytes
    bin   byte strings: i8d end offsets followed by the concatenated bytes

The decoded section is the columns' bytes back to back in the order the spec lists them; the
stored section is that, compressed with zstd. The spec is ``[[name, kind, decoded bytes], ...]``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import zstandard

from atlas.errors import CorruptionError

KINDS = ("i8", "i8d", "f8", "i4", "u4", "u1", "txt", "bin")
_FIXED = {"i8": "<i8", "i8d": "<i8", "f8": "<i8", "i4": "<i4", "u4": "<u4", "u1": "u1"}
SECTION_LEVEL = 3
# the largest decoded section a reader accepts: bounds what a forged spec can make it allocate
MAX_SECTION_BYTES = 1 << 36


def encode_column(values: Any, kind: str) -> bytes:
    """The stored bytes of one column (before the section's compression)."""
    if kind in ("txt", "bin"):
        items = list(values)
        if kind == "txt":
            joined = "\x00".join(items)
            if "\x00" not in "".join(items):
                return b"\x00" + joined.encode("utf-8")
            items = [s.encode("utf-8") for s in items]
            prefix = b"\x01"
        else:
            prefix = b""
        ends = np.cumsum(np.fromiter((len(b) for b in items), np.int64, len(items)))
        return prefix + _delta(ends).tobytes() + b"".join(items)
    array = np.ascontiguousarray(values, dtype=_FIXED[kind])
    if kind == "i8d":
        return _delta(array).tobytes()
    if kind == "f8":
        return array.view(np.uint8).reshape(-1, 8).T.tobytes()
    return array.tobytes()


def _delta(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), "<i8")
    if len(values):
        out[0] = values[0]
        np.subtract(values[1:], values[:-1], out=out[1:])
    return out


def decode_column(data: memoryview, kind: str, rows: int, where: str, joined: bool = False
                  ) -> Any:
    """One column from its stored bytes: a numpy array, or a list for txt/bin (``joined``: a
    txt column stored joined by NUL comes back as those bytes, not split)."""
    if kind in ("txt", "bin"):
        if kind == "txt" and joined and len(data) and data[0] == 0:
            return bytes(data[1:])
        if kind == "txt":
            if len(data) < 1 or data[0] not in (0, 1):
                raise CorruptionError(f"{where}: text column is damaged")
            if data[0] == 0:
                if rows == 0:
                    return []
                items = bytes(data[1:]).decode("utf-8").split("\x00")
                if len(items) != rows:
                    raise CorruptionError(f"{where}: text column holds {len(items)} texts, "
                                          f"expected {rows}")
                return items
            data = data[1:]
        if len(data) < 8 * rows:
            raise CorruptionError(f"{where}: {kind} column is shorter than its offsets")
        ends = np.cumsum(np.frombuffer(data, "<i8", rows))
        blob = bytes(data[8 * rows:])
        if rows and (ends[-1] != len(blob) or np.any(np.diff(ends) < 0) or ends[0] < 0):
            raise CorruptionError(f"{where}: {kind} column offsets are damaged")
        starts = np.concatenate([[0], ends[:-1]]).tolist()
        pieces = [blob[a:b] for a, b in zip(starts, ends.tolist())]
        if kind == "bin":
            return pieces
        try:
            return [p.decode("utf-8") for p in pieces]
        except UnicodeDecodeError as err:
            raise CorruptionError(f"{where}: text column is not UTF-8") from err
    dtype = np.dtype(_FIXED[kind])
    if len(data) != rows * dtype.itemsize:
        raise CorruptionError(f"{where}: column of {rows} rows holds {len(data)} bytes")
    if kind == "i8d":
        return np.cumsum(np.frombuffer(data, "<i8"), dtype=np.int64)
    if kind == "f8":
        return np.frombuffer(data, np.uint8).reshape(8, rows).T.copy().view("<i8").reshape(rows)
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False)


def encode_section(columns: Sequence[tuple[str, str, Any]], level: int = SECTION_LEVEL
                   ) -> tuple[bytes, list, int]:
    """(stored bytes, spec, decoded length) of ``(name, kind, values)`` columns."""
    pieces, spec = [], []
    for name, kind, values in columns:
        if kind not in KINDS:
            raise ValueError(f"unknown column kind {kind!r}")
        data = encode_column(values, kind)
        pieces.append(data)
        spec.append([name, kind, len(data)])
    raw = b"".join(pieces)
    return zstandard.ZstdCompressor(level=level).compress(raw), spec, len(raw)


def decode_section(stored, spec: list, rows: int, decoded_length: int, where: str,
                   joined: bool = False) -> dict[str, Any]:
    """The columns of a section, checked against its spec (sizes bound every allocation);
    ``joined``: see :func:`decode_column`."""
    if not isinstance(decoded_length, int) or not 0 <= decoded_length <= MAX_SECTION_BYTES:
        raise CorruptionError(f"{where}: section claims {decoded_length!r} decoded bytes")
    try:
        total = sum(int(n) for _name, _kind, n in spec)
    except (TypeError, ValueError) as err:
        raise CorruptionError(f"{where}: section spec is damaged") from err
    if total != decoded_length:
        raise CorruptionError(f"{where}: section spec adds up to {total} bytes, "
                              f"the section holds {decoded_length}")
    from atlas.codecs import decompress_zstd

    raw = memoryview(decompress_zstd(stored, decoded_length, where))
    out, at = {}, 0
    for name, kind, n in spec:
        if kind not in KINDS:
            raise CorruptionError(f"{where}: unknown column kind {kind!r}")
        out[name] = decode_column(raw[at : at + n], kind, rows, f"{where} column {name!r}",
                                  joined)
        at += n
    return out
