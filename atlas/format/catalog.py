"""Catalog parts: immutable files holding catalog tables, one section per table.

A part is an ``atlas.format.container`` with magic ``ATLCAT02``, no payload, and one section per
table it changes (see ``atlas.format.tables`` for the kinds):

    ["datasets"]               datasets table
    ["schemas"]                schemas table
    ["array", A]               array table of the array name A
    ["attr", K]                attr table of the dataset attribute K
    ["array_attr", A, K]       attr table of the attribute K of array A
    ["names_bloom"]            with ["datasets"]: a Bloom filter of its names (atlas.format.bloom)

The commit's root lists its parts, oldest first; a table's content is the :func:`merge` of its
sections in every listed part. A part's footer also records the value format version.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import numpy as np

from atlas.codecs import checksum
from atlas.errors import CorruptionError
from atlas.format import bloom, values
from atlas.format.columns import (
    Frame,
    column_pieces,
    declared_kind,
    decode_column,
    decode_pieces,
    inflate_frame,
    join_pieces,
)
from atlas.format.container import (
    ContainerWriter,
    Footer,
    LockedFile,
    read_section,
    section_frames,
)
from atlas.format.tables import KINDS, Table

MAGIC = b"ATLCAT02"
BLOOM = ("names_bloom",)
SECTION_KINDS = {"datasets": ("datasets", 0), "schemas": ("schemas", 0), "array": ("array", 1),
                 "attr": ("attr", 1), "array_attr": ("attr", 2)}


@functools.lru_cache(maxsize=1 << 12)  # every footer read checks every section id it holds
def table_kind(section_id: tuple) -> str:
    """The table kind stored under a section id; CorruptionError for an id that is not one."""
    found = SECTION_KINDS.get(section_id[0]) if section_id else None
    if found is None or len(section_id) != 1 + found[1] or not all(
            isinstance(n, str) and n for n in section_id[1:]):
        raise CorruptionError(f"catalog section {list(section_id)!r} is not a known table")
    return found[0]


def write_part(path: str, tables: Iterable[tuple[tuple, Table]], **extra: Any) -> LockedFile:
    """Write a part holding ``tables`` ((section id, table) pairs, consumed one at a time: a
    flush of a million datasets never holds every table at once) at ``path``; the returned
    file stays locked until released (after the commit that references it)."""
    out = LockedFile(path)
    try:
        out.write(MAGIC)
        writer = ContainerWriter(out.write)
        for section_id, table in tables:
            table_kind(section_id)
            # a frame per column: a query decompresses only the columns it reads. The
            # section encodes on the worker threads while this thread writes the one before
            # and makes the next (two tables at most are held at once)
            writer.begin(section_id, table.section_columns(), len(table))
            writer.drain(keep=1)
            if section_id == ("datasets",):
                bits = bloom.build(table.columns["name"], table.name_hashes)
                writer.begin(BLOOM, [("bits", "u1", bits)], len(bits))
        writer.finish(kind="catalog", values=values.VERSION, **extra)
        out.truncate()
    except BaseException:
        out.release()
        raise
    return out


def check_footer(footer: Footer, where: str) -> None:
    if footer.extra.get("kind") != "catalog":
        raise CorruptionError(f"{where}: not a catalog part")
    if footer.extra.get("values") != values.VERSION:
        raise CorruptionError(f"{where}: value format {footer.extra.get('values')!r} not "
                              f"understood (expected {values.VERSION})")
    for section_id in footer.sections:
        if section_id == BLOOM:
            continue
        try:
            table_kind(section_id)
        except CorruptionError as err:
            raise CorruptionError(f"{where}: {err}") from None


def check_ids(section_id: tuple, key, columns: dict, root, where: str) -> None:
    """CorruptionError when a table row names an id the root's counters have not handed out
    yet: ids are never reused, and a reader trusts ``next_did`` to know which datasets have
    committed rows."""
    check_id_column(section_id, "key", key, root, where)
    for name in _ID_COLUMNS.get(table_kind(section_id), ()):
        check_id_column(section_id, name, columns[name], root, where)


_ID_COLUMNS = {"array": ("slot", "schema"), "attr": ("seq",)}


def check_id_column(section_id: tuple, name: str, ids, root, where: str) -> None:
    """:func:`check_ids` of one column (the others are not ids: nothing to check)."""
    kind = table_kind(section_id)
    if name == "key":
        limit = root.next_slot if section_id[0] == "array_attr" else \
            root.next_schema if kind == "schemas" else root.next_did
    elif name in _ID_COLUMNS.get(kind, ()):
        limit = {"slot": root.next_slot, "schema": root.next_schema, "seq": root.next_seq}[name]
    else:
        return
    top = int(np.max(ids)) if len(ids) else -1
    if top >= limit:
        raise CorruptionError(f"{where}: {kind} table {list(section_id)} holds {name} "
                              f"{top}, not below the root's counter {limit}")


def check_values(table: Table, where: str) -> None:
    """CorruptionError when a value of an attribute table does not decode."""
    for tag, num, data in zip(table.columns["tag"].tolist(), table.columns["num"].tolist(),
                              table.columns["data"]):
        values.decode_stored(tag, num, data, where)


# the kind each column of a table is stored as (an ``i8d`` column may be stored ``i8s``)
_COLUMN_KINDS = {kind: {"key": "i8d", "dead": "u1", **{name: k for name, k, *_ in columns}}
                 for kind, columns in KINDS.items()}


def check_kinds(kind: str, spec: list, where: str) -> None:
    """CorruptionError when a column the table kind defines is stored as another kind (a
    well-formed spec, checked already): decoded by the kind it claims, a tombstone column of
    texts or a count of floats would read as other values without any error."""
    expected = _COLUMN_KINDS[kind]
    for entry in spec:
        name, stored = entry[0], declared_kind(entry[1])
        wanted = expected.get(name)
        if wanted is not None and stored != wanted:
            raise CorruptionError(f"{where}: {kind} table column {name!r} is stored as "
                                  f"{stored!r}, expected {wanted!r}")


def read_table(footer: Footer, section_id: tuple, read, where: str, root=None,
               lazy: bool = False) -> Table | None:
    """The table stored under ``section_id`` in a part, or None when the part has none.
    ``root``: check its ids against that root's counters (:func:`check_ids`). ``lazy``: the
    columns of a framed section other than ``key`` and ``dead`` are read and decoded when first
    used (``read`` is kept till then), each checked against its own checksum."""
    ref = footer.sections.get(section_id)
    if ref is None:
        return None
    kind = table_kind(section_id)
    label = f"{where} {list(section_id)}"
    check = None if root is None else (
        lambda name, column: check_id_column(section_id, name, column, root, label))
    frames = section_frames(ref, label) if lazy else None
    if frames is None:
        columns = read_section(ref, read(ref.offset, ref.stored), label)
        check_kinds(kind, ref.spec, label)
        return Table.from_section(kind, columns, label, check=check)
    check_kinds(kind, ref.spec, label)
    # the section's own checksum, once: damage in any column fails the table as a whole, as
    # it does for a section stored as one frame (the columns still decode only when used)
    if checksum(read(ref.offset, ref.stored)) != ref.crc:
        raise CorruptionError(f"{label}: section fails its checksum")
    columns = column_pieces(frames)
    now = {name: decode_pieces([read(f.offset, f.stored) for f in pieces], pieces, ref.rows,
                               label)
           for name, pieces in columns.items() if name in ("key", "dead")}
    later = {name: _ColumnDecoder(pieces, read, ref.rows, label)
             for name, pieces in columns.items() if name not in now}
    return Table.from_section(kind, now, label, later, check)


class _ColumnDecoder:
    """``decode(rows)`` of one column of a framed section (see ``Table.from_section``): a few
    rows of a text column are cut from the joined texts, without a string for every row.
    ``prefetch(submit)`` starts reading and decompressing its frames on other threads
    (``submit`` as an executor's): the next decode takes those results instead of doing it
    again, and does here what no thread has begun yet."""

    def __init__(self, pieces: list[Frame], read, rows: int, where: str) -> None:
        self.pieces, self.read, self.rows, self.where = pieces, read, rows, where
        self.kind = pieces[0].kind
        self.label = f"{where} column {pieces[0].name!r}"
        self.started: list | None = None

    def prefetch(self, submit: Callable) -> None:
        if self.started is None:
            # a column of one frame and numbers is decoded there too (no Python objects)
            decode = len(self.pieces) == 1 and self.kind not in ("txt", "bin")
            self.started = [submit(self._inflate, piece, decode) for piece in self.pieces]

    def _inflate(self, piece: Frame, decode: bool = False) -> Any:
        raw = inflate_frame(self.read(piece.offset, piece.stored), piece, self.where)
        return decode_column(raw, self.kind, self.rows, self.label) if decode else raw

    def _raws(self) -> Any:
        """The decoded bytes of each frame (or the column, when a thread decoded it)."""
        started, self.started = self.started, None
        if started is None:
            started = [None] * len(self.pieces)
        raws = [self._inflate(piece) if future is None or future.cancel() else None
                for piece, future in zip(self.pieces, started)]
        raws = [raw if raw is not None else future.result()
                for raw, future in zip(raws, started)]
        return raws[0] if isinstance(raws[0], np.ndarray) else raws

    def __call__(self, wanted, blobs: bool = False):
        kind, rows, label = self.kind, self.rows, self.label
        raws = self._raws()
        if isinstance(raws, np.ndarray):  # decoded on the other thread
            return raws, False
        if (wanted is not None and kind == "txt" and len(wanted) * 8 < rows
                and raws[0][:1] == b"\x00"):  # texts joined by NUL: cut from the pieces
            return _pick_texts([raws[0][1:], *raws[1:]], wanted, rows, label), True
        raw = join_pieces(raws)
        if blobs and kind == "bin":
            return decode_column(raw, kind, rows, label, joined=True), True
        if blobs and kind == "txt":  # the texts joined by NUL, or None (stored otherwise)
            joined = decode_column(raw, kind, rows, label, joined=True)
            return (joined if isinstance(joined, memoryview) else None), True
        return decode_column(raw, kind, rows, label), False


PICK_STEP = 1 << 20  # bytes of joined texts searched for separators at a time


def _pick_texts(parts: list, wanted: np.ndarray, rows: int, where: str) -> np.ndarray:
    """Texts ``wanted`` (positions) of ``rows`` texts joined by NUL, those bytes given as
    ``parts`` back to back (a column's frames), finding the separators a step at a time (no
    mask as large as the texts) and joining no part to another."""
    bufs = [np.frombuffer(part, np.uint8) for part in parts]
    bounds = np.cumsum([0] + [len(buf) for buf in bufs])  # where each part starts
    total = int(bounds[-1])
    wanted = np.asarray(wanted, np.int64)
    stride = (total + 1) // rows if rows else 0
    if rows > 1 and stride * rows == total + 1 and not any(
            buf[(stride - 1 - int(lo)) % stride :: stride].any() for buf, lo in zip(bufs, bounds)):
        # texts of one length (the common case: p0000001, ...) when every separator is where
        # that length puts it: each text starts at a multiple of the stride, no search
        starts = wanted * stride
        return _texts(parts, bounds, starts, starts + (stride - 1), where)
    index = np.int32 if total < 2**31 else np.int64
    found = [np.flatnonzero(buf[at : at + PICK_STEP] == 0).astype(index) + (at + int(lo))
             for buf, lo in zip(bufs, bounds) for at in range(0, len(buf), PICK_STEP)]
    nuls = np.concatenate(found) if found else np.zeros(0, index)
    if len(nuls) != max(rows - 1, 0):
        raise CorruptionError(f"{where}: text column holds {len(nuls) + 1} texts, "
                              f"expected {rows}")
    ends = np.where(wanted < rows - 1, nuls[np.minimum(wanted, max(rows - 2, 0))] if len(nuls)
                    else 0, total).astype(np.int64)
    starts = np.where(wanted > 0, nuls[np.maximum(wanted - 1, 0)] + 1 if len(nuls) else 0, 0)
    return _texts(parts, bounds, starts, ends, where)


def _texts(parts: list, bounds: np.ndarray, starts: np.ndarray, ends: np.ndarray,
           where: str) -> np.ndarray:
    """The texts at byte ranges [start, end) of ``parts`` back to back (``bounds``: where
    each part starts); a text across two parts is the one joined."""
    last = len(parts) - 1
    first_part = np.minimum(np.searchsorted(bounds, starts, "right") - 1, last).tolist()
    end_part = np.minimum(np.searchsorted(bounds, np.maximum(ends - 1, starts), "right") - 1,
                          last).tolist()
    lows = bounds.tolist()
    out = np.empty(len(starts), object)
    texts = []
    try:
        for a, b, i, j in zip(starts.tolist(), ends.tolist(), first_part, end_part):
            if i == j:
                texts.append(str(parts[i][a - lows[i] : b - lows[i]], "utf-8"))
            else:
                texts.append(str(b"".join(parts[k][max(a - lows[k], 0) : b - lows[k]]
                                          for k in range(i, j + 1)), "utf-8"))
    except UnicodeDecodeError as err:
        raise CorruptionError(f"{where}: text column is not UTF-8") from err
    out[:] = texts
    if any("\x00" in text for text in texts):  # more separators than rows: damaged
        raise CorruptionError(f"{where}: text column holds more texts than {len(ends)} rows")
    return out


def read_bloom(footer: Footer, read, where: str):
    """The names filter of a part holding a datasets table; None when the part has no datasets
    table, True when it has one but no filter (every name may be there)."""
    if ("datasets",) not in footer.sections:
        return None
    ref = footer.sections.get(BLOOM)
    if ref is None:
        return True
    label = f"{where} names filter"
    columns = read_section(ref, read(ref.offset, ref.stored), label)
    bits = columns.get("bits")
    if not isinstance(bits, np.ndarray) or bits.dtype != np.uint8:
        raise CorruptionError(f"{label}: expected one u1 column 'bits', got {list(columns)}")
    return bits
