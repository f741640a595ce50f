"""Typed columns as one compressed section: how tables are stored in segments and catalog parts.

A section holds the columns of one table, all of the same row count, each as a ``kind``:

    i8    int64, little-endian
    i8d   int64 stored as differences from the previous value (sorted keys, offsets: the
          differences are small and repeat, so they compress to almost nothing)
    i8s   int64 values first, first + step, first + 2 step, ...: stored as (first, step),
          16 bytes whatever the row count. Writers store an ``i8d`` column of at least two
          values this way when its values are such a sequence (dense keys, one schema id)
    f8    int64 or float64 bits, bytes shuffled (byte 0 of every value, then byte 1, ...), so
          that values sharing their high bytes compress
    i4    int32, little-endian;  u4  uint32;  u1  uint8
    txt   UTF-8 texts: a u8 flag, then either (flag 0) the texts joined by NUL, or (flag 1)
          i8d end offsets followed by the concatenated bytes
    bin   byte strings: i8d end offsets followed by the concatenated bytes

The decoded section is the columns' bytes back to back in the order the spec lists them. A
section is stored one of two ways, which its spec tells apart:

- one zstd frame of the decoded section; spec ``[[name, kind, decoded bytes], ...]``;
- *framed*: each column its own zstd frames, back to back, so that a reader decompresses only
  the columns it uses; spec ``[[name, kind, decoded bytes, stored bytes, crc32c], ...]``, the
  crc32c over that frame. Writers cut a text or bytes column of more than ``PIECE_BYTES``
  decoded bytes into frames (pieces) of ``PIECE_BYTES`` (the last one shorter), listed one
  after the other under its name: its bytes are theirs back to back, and threads decompress
  them side by side. Readers take pieces in a column of any kind.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from atlas._pools import on_worker_thread, worker_pool
from atlas.codecs import checksum, decompress_zstd, zstd_compressor
from atlas.errors import CorruptionError

KINDS = ("i8", "i8d", "i8s", "f8", "i4", "u4", "u1", "txt", "bin")
_FIXED = {"i8": "<i8", "i8d": "<i8", "f8": "<i8", "i4": "<i4", "u4": "<u4", "u1": "u1"}
_WIDTHS = {kind: np.dtype(code).itemsize for kind, code in _FIXED.items()}
SECTION_LEVEL = 3
PIECE_BYTES = 1 << 21  # decoded bytes of one frame of a framed column at most
PARALLEL_ROWS = 1 << 14  # framed sections of this many rows encode their columns side by side
CHECK_ROWS = 1 << 16  # values of a column checked at a time for an even step
LOOP_UNSHUFFLE_ROWS = 1 << 13  # f8 columns this long unshuffle byte by byte (faster there)
THREADED_BYTES = 1 << 22  # frames of this many decoded bytes are compressed on zstd's threads
ZSTD_THREADS = max(2, os.cpu_count() or 2)
# the largest decoded section a reader accepts: bounds what a forged spec can make it allocate
MAX_SECTION_BYTES = 1 << 36


class Encoded(NamedTuple):
    """A column given as its stored bytes already (what :func:`encode_column` makes of its
    values): a writer that has them joined spares the join."""

    data: bytes


def encode_column(values: Any, kind: str) -> bytes | np.ndarray:
    """The stored bytes of one column (before the section's compression; bytes, or a uint8
    array that may be a view of ``values``); an ``i8s`` column must be a sequence (see
    :func:`stored_kind`)."""
    if isinstance(values, Encoded):
        return values.data
    if kind in ("txt", "bin"):
        items = list(values)
        if kind == "txt":
            joined = "\x00".join(items)
            if joined.count("\x00") == max(len(items) - 1, 0):  # no NUL inside a text
                return b"\x00" + joined.encode("utf-8")
            items = [s.encode("utf-8") for s in items]
            prefix = b"\x01"
        else:
            prefix = b""
        ends = np.cumsum(np.fromiter((len(b) for b in items), np.int64, len(items)))
        return prefix + _delta(ends).tobytes() + b"".join(items)
    if kind == "i8s":
        first, second = (int(v) for v in np.asarray(values, "<i8")[:2])
        return np.array([first, second - first], "<i8").tobytes()
    if kind == "i8d":  # the differences of a strided view: no contiguous copy first
        return _delta(np.asarray(values, dtype=_FIXED[kind])).view(np.uint8)
    array = np.ascontiguousarray(values, dtype=_FIXED[kind])
    if kind == "f8":
        return array.view(np.uint8).reshape(-1, 8).T.tobytes()
    return array.view(np.uint8).reshape(-1)


def stored_kind(values: Any, kind: str) -> str:
    """The kind a column of ``kind`` is stored as: ``i8s`` for an ``i8d`` column of evenly
    spaced values (decoding then costs no decompression and no running sum)."""
    if kind != "i8d" or len(values) < 2:
        return kind
    array = np.asarray(values, "<i8")
    first, step = int(array[0]), int(array[1]) - int(array[0])
    last = first + (len(array) - 1) * step
    if not -(2**63) <= last < 2**63 or int(array[-1]) != last:
        return kind  # a step that does not fit int64, or not a sequence
    with np.errstate(over="ignore"):
        for at in range(0, len(array) - 1, CHECK_ROWS):  # no temporary as big as the column
            piece = array[at : at + CHECK_ROWS + 1]
            if not (piece[1:] - piece[:-1] == step).all():
                return kind
    return "i8s"


def declared_kind(kind: Any) -> Any:
    """The kind a table declares for a column stored as ``kind``."""
    return "i8d" if kind == "i8s" else kind


def _delta(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), "<i8")
    if len(values):
        out[0] = values[0]
        np.subtract(values[1:], values[:-1], out=out[1:])
    return out


def constant(value: Any, rows: int, dtype: Any) -> np.ndarray:
    """A read-only column of ``rows`` copies of ``value`` with no memory per row: what
    ``np.broadcast_to`` gives, at a quarter of its cost (a fresh reader makes such columns for
    every small table of every file it opens)."""
    one = np.array(value, dtype)
    if one.dtype.hasobject:  # no buffer to view
        return np.broadcast_to(one, (rows,))
    column = np.ndarray((rows,), one.dtype, one, 0, (0,))
    column.flags.writeable = False
    return column


def decode_column(data: memoryview, kind: str, rows: int, where: str, joined: bool = False
                  ) -> Any:
    """One column from its stored bytes: a numpy array, or a list for txt/bin (``joined``: a
    txt column stored joined by NUL comes back as those bytes, not split (a memoryview of
    ``data``, not a copy), and a bin column as ``(end offsets, the concatenated bytes)``)."""
    if kind in ("txt", "bin"):
        if kind == "txt" and joined and len(data) and data[0] == 0:
            return memoryview(data)[1:]
        if kind == "txt":
            if len(data) < 1 or data[0] not in (0, 1):
                raise CorruptionError(f"{where}: text column is damaged")
            if data[0] == 0:
                if rows == 0:
                    return []
                try:
                    items = str(data[1:], "utf-8").split("\x00")
                except UnicodeDecodeError as err:
                    raise CorruptionError(f"{where}: text column is not UTF-8") from err
                if len(items) != rows:
                    raise CorruptionError(f"{where}: text column holds {len(items)} texts, "
                                          f"expected {rows}")
                return items
            data = data[1:]
        if len(data) < 8 * rows:
            raise CorruptionError(f"{where}: {kind} column is shorter than its offsets")
        ends = np.frombuffer(data, "<i8", rows).cumsum()
        blob = bytes(data[8 * rows:])
        if rows and (ends[-1] != len(blob) or np.any(np.diff(ends) < 0) or ends[0] < 0):
            raise CorruptionError(f"{where}: {kind} column offsets are damaged")
        if kind == "bin" and joined:
            return ends, blob
        if not blob:  # every value empty (the data column of numeric attributes): no slicing
            return [b""] * rows if kind == "bin" else [""] * rows
        starts = np.concatenate([[0], ends[:-1]]).tolist()
        pieces = [blob[a:b] for a, b in zip(starts, ends.tolist())]
        if kind == "bin":
            return pieces
        try:
            return [p.decode("utf-8") for p in pieces]
        except UnicodeDecodeError as err:
            raise CorruptionError(f"{where}: text column is not UTF-8") from err
    if kind == "i8s":
        if len(data) != 16 or rows < 2:
            raise CorruptionError(f"{where}: sequence column of {rows} rows holds "
                                  f"{len(data)} bytes")
        first, step = np.frombuffer(data, "<i8").tolist()
        if not -(2**63) <= first + (rows - 1) * step < 2**63:
            raise CorruptionError(f"{where}: sequence column runs past int64")
        if step == 0:  # one value (a schema id): read-only, no memory per row
            return constant(first, rows, np.int64)
        return np.arange(first, first + rows * step, step, dtype=np.int64)
    dtype = np.dtype(_FIXED[kind])
    if len(data) != rows * dtype.itemsize:
        raise CorruptionError(f"{where}: column of {rows} rows holds {len(data)} bytes")
    if kind == "i8d":
        return np.frombuffer(data, "<i8").cumsum(dtype=np.int64)
    if kind == "f8":
        shuffled = np.frombuffer(data, np.uint8).reshape(8, rows)
        if rows < LOOP_UNSHUFFLE_ROWS:  # a transposing copy: one call
            return np.ascontiguousarray(shuffled.T).view("<i8").reshape(rows).astype(
                np.int64, copy=False)
        out = np.zeros((rows, 8), np.uint8)
        for byte in range(8):  # long columns: up to twice as fast as the transposing copy
            if shuffled[byte].any():  # float32 values as float64 have zero low bytes
                out[:, byte] = shuffled[byte]
        return out.view("<i8").reshape(rows).astype(np.int64, copy=False)
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False)


def encode_section(columns: Sequence[tuple[str, str, Any]], level: int = SECTION_LEVEL,
                   framed: bool = False) -> tuple[bytes, list, int]:
    """(stored bytes, spec, decoded length) of ``(name, kind, values)`` columns; ``framed``:
    zstd frames per column (see the module docstring), the columns of a long section encoded
    side by side on the worker threads."""
    if framed:
        return start_framed(columns, level)()
    _check_kinds(columns)
    pieces, spec = [], []
    for name, kind, values in columns:
        kind = stored_kind(values, kind)
        data = encode_column(values, kind)
        pieces.append(data)
        spec.append([name, kind, len(data)])
    size = sum(len(piece) for piece in pieces)
    compressor = _compressor(level, size)
    if len(pieces) == 1:
        return compressor.compress(pieces[0]), spec, size
    # one frame streamed from the pieces: no joined copy of them (a segment index of a
    # million chunks is tens of MB of columns)
    stream = compressor.compressobj(size=size)
    stored = [stream.compress(piece) for piece in pieces]
    stored.append(stream.flush())
    return b"".join(stored), spec, size


def start_framed(columns: Sequence[tuple[str, str, Any]], level: int = SECTION_LEVEL
                 ) -> Callable[[], tuple[bytes, list, int]]:
    """Begin encoding a framed section: a long section's columns go to the worker threads at
    once, and the caller goes on meanwhile; the returned function waits for them and gives
    :func:`encode_section`'s triple."""
    _check_kinds(columns)
    rows = len(columns[0][2]) if columns else 0
    parallel = rows >= PARALLEL_ROWS and len(columns) > 1 and not on_worker_thread()
    work = [worker_pool().submit(_framed, column, level) for column in columns] if parallel \
        else [_framed(column, level) for column in columns]

    def joined() -> tuple[bytes, list, int]:
        encoded = [future.result() for future in work] if parallel else work
        pieces = [frame for frames, _spec in encoded for frame in frames]
        spec = [entry for _frames, entries in encoded for entry in entries]
        return b"".join(pieces), spec, sum(entry[2] for entry in spec)

    return joined


def _check_kinds(columns: Sequence[tuple[str, str, Any]]) -> None:
    for _name, kind, _values in columns:
        if kind not in KINDS:
            raise ValueError(f"unknown column kind {kind!r}")


def _compressor(level: int, size: int):
    """This thread's compressor for ``size`` bytes: a big frame is compressed by zstd's own
    threads too (a section of a million rows is tens of MB)."""
    return zstd_compressor(level, ZSTD_THREADS if size >= THREADED_BYTES else 0)


def _framed(column: tuple[str, str, Any], level: int) -> tuple[list[bytes], list[list]]:
    """The frames of one column of a framed section and their spec entries."""
    name, kind, values = column
    kind = stored_kind(values, kind)
    data = encode_column(values, kind)
    compressor = _compressor(level, len(data))  # this thread's
    view = memoryview(data)
    # numbers decode whole on one thread (f8's byte planes span the column); texts, which
    # decode in Python anyway, are cut to be decompressed side by side
    step = PIECE_BYTES if kind in ("txt", "bin") else max(len(data), 1)
    frames, spec = [], []
    for at in range(0, max(len(data), 1), step):  # an empty column: one frame
        piece = view[at : at + step]
        frame = compressor.compress(piece)
        frames.append(frame)
        spec.append([name, kind, len(piece), len(frame), checksum(frame)])
    return frames, spec


class Frame(NamedTuple):
    """Where one frame (a column, or a piece of one) of a framed section lies in the
    section's stored bytes. (A named tuple: a fresh reader makes one per column of every
    table it opens, and a frozen dataclass costs four times as much to make.)"""

    name: str
    kind: str
    decoded: int
    offset: int
    stored: int
    crc: int


def check_spec(spec: Any, decoded_length: Any, rows: Any, where: str, base: int = 0
               ) -> list[Frame] | None:
    """The frames of a framed section's spec (None for a section stored as one frame), after
    checking that the spec is well formed, adds up to ``decoded_length`` and gives each column
    the size ``rows`` values take; their offsets count from ``base``. (Every reader of a
    section comes here before decoding a column: an ``i8s`` column takes 16 bytes for any
    count, so a forged count would otherwise be expanded before a later column showed it.)"""
    if not isinstance(decoded_length, int) or not 0 <= decoded_length <= MAX_SECTION_BYTES:
        raise CorruptionError(f"{where}: section claims {decoded_length!r} decoded bytes")
    if type(rows) is not int or rows < 0:
        raise CorruptionError(f"{where}: section claims {rows!r} rows")
    try:
        if type(spec) is not list:
            raise ValueError(f"a spec is a list, got {type(spec).__name__}")
        width = len(spec[0]) if spec else 3
        if width not in (3, 5):
            raise ValueError("entries of different shapes")
        frames: list[Frame] = []
        total, at, previous = 0, 0, None
        sizes: dict[str, list] = {}  # column -> [kind, decoded bytes of all its pieces]
        for entry in spec:
            if len(entry) != width:
                raise ValueError("entries of different shapes")
            name, kind, n = entry[:3]
            if not isinstance(name, str) or type(n) is not int or n < 0:
                raise ValueError(f"bad entry {entry!r}")
            if kind not in KINDS:
                raise CorruptionError(f"{where}: unknown column kind {kind!r}")
            found = sizes.get(name)
            if found is None:
                sizes[name] = [kind, n]
            elif width == 5 and name == previous:  # the next piece of a column
                if kind != found[0]:
                    raise ValueError(f"the pieces of column {name!r} differ in kind")
                found[1] += n
            else:  # a column listed twice, or its pieces apart
                raise ValueError(f"column {name!r} is listed twice")
            previous = name
            total += n
            if width == 5:
                stored, crc = entry[3:]
                if type(stored) is not int or type(crc) is not int or stored < 0:
                    raise ValueError(f"bad entry {entry!r}")
                frames.append(Frame(name, kind, n, base + at, stored, crc))
                at += stored
    except (TypeError, ValueError) as err:
        raise CorruptionError(f"{where}: section spec is damaged ({err})") from err
    if total != decoded_length:
        raise CorruptionError(f"{where}: section spec adds up to {total} bytes, "
                              f"the section holds {decoded_length}")
    for name, (kind, n) in sizes.items():
        itemsize = _WIDTHS.get(kind)
        if itemsize is not None and n != rows * itemsize or kind == "txt" and n < min(rows, 1) \
                or kind == "bin" and n < 8 * rows:
            raise CorruptionError(f"{where}: column {name!r} ({kind}) holds {n} bytes, too few "
                                  f"or too many for {rows} rows")
    return frames if width == 5 else None


def column_pieces(frames: list[Frame]) -> dict[str, list[Frame]]:
    """The frames of a framed section by column (a column's pieces in order)."""
    out: dict[str, list[Frame]] = {}
    for frame in frames:
        out.setdefault(frame.name, []).append(frame)
    return out


def decode_pieces(stored: list, pieces: list[Frame], rows: int, where: str,
                  joined: bool = False) -> Any:
    """One column of a framed section from the stored bytes of each of its frames (checked
    against their crc32c); ``joined``: see :func:`decode_column`."""
    raw = join_pieces([inflate_frame(data, piece, where) for data, piece in zip(stored, pieces)])
    return decode_column(raw, pieces[0].kind, rows, f"{where} column {pieces[0].name!r}", joined)


def join_pieces(raws: list[memoryview]) -> memoryview:
    return raws[0] if len(raws) == 1 else memoryview(b"".join(raws))


def inflate_frame(stored, frame: Frame, where: str) -> memoryview:
    """A column frame's decoded bytes, after its checksum."""
    label = f"{where} column {frame.name!r}"
    if len(stored) != frame.stored or checksum(stored) != frame.crc:
        raise CorruptionError(f"{label}: fails its checksum")
    return memoryview(decompress_zstd(stored, frame.decoded, label))


def decode_section(stored, spec: list, rows: int, decoded_length: int, where: str,
                   joined: bool = False) -> dict[str, Any]:
    """The columns of a section, checked against its spec (sizes bound every allocation);
    ``joined``: see :func:`decode_column`."""
    frames = check_spec(spec, decoded_length, rows, where)
    if frames is not None:
        if sum(f.stored for f in frames) != len(stored):
            raise CorruptionError(f"{where}: section frames do not fill the section")
        view = memoryview(stored)
        return {name: decode_pieces([view[f.offset : f.offset + f.stored] for f in pieces],
                                    pieces, rows, where, joined)
                for name, pieces in column_pieces(frames).items()}
    raw = memoryview(decompress_zstd(stored, decoded_length, where))
    out, at = {}, 0
    for name, kind, n in spec:
        out[name] = decode_column(raw[at : at + n], kind, rows, f"{where} column {name!r}",
                                  joined)
        at += n
    return out
