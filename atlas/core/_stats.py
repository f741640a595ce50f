"""Array statistics at flush, from the chunks' partials.

row_count is the number of cells; null_count counts cells equal to the fill value, NaN/NaT, and
cells never written (chunks never stored count whole); min/max are over the remaining cells.

Arrays of one chunk (profiles, scalars: nearly every array of a large collection) take the
partial of their pending chunk, for all rows of a table at once. Arrays of many chunks fold
the partials of their chunks, pending and committed, one array at a time.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from atlas import kernels
from atlas.core import _chunks
from atlas.core._index import ChunkIndex
from atlas.core._read import _distinct
from atlas.format.schema import Schema

_I64 = np.int64
StringPartials = Callable[[int], tuple[str, str] | None]  # pending index row -> (min, max)
ChunkReader = Callable[[int, int, tuple[int, ...]], tuple | None]  # slot, chunk, extent
# slots -> (has, nulls, valid, min, max) of their pending chunk 0
FirstPartials = Callable[[np.ndarray], tuple[np.ndarray, ...]]


def compute(slots: np.ndarray, schema_ids: np.ndarray, schemas: list[Schema],
            first_partials: FirstPartials, pending: Callable[[], ChunkIndex | None],
            committed: Callable[[], ChunkIndex], string_partial: StringPartials,
            read: ChunkReader) -> dict[str, np.ndarray]:
    """Statistics columns (nulls, valid, min, max, smin, smax) for the array incarnations
    ``slots``: arrays of one chunk take the pending partial of their chunk 0
    (``first_partials``); the others fold the partials of their chunks in ``pending()``
    (newest) and ``committed()``, each built only when an array needs it (a flush of new
    datasets builds neither)."""
    n = len(slots)
    numbers = ("nulls", "valid", "min", "max")
    out: dict[str, np.ndarray] = {}  # zeros only where not every row's partial is pending
    distinct = _distinct(schema_ids)
    if any(schemas[sid].dtype.is_string for sid in distinct):
        out["smin"] = np.full(n, "", object)
        out["smax"] = np.full(n, "", object)
    simple = np.zeros(n, bool)
    for sid in distinct:
        if schemas[sid].n_chunks == 1 and not schemas[sid].dtype.is_string:
            simple |= schema_ids == sid
    if simple.any():
        rows = np.flatnonzero(simple)
        every = len(rows) == n
        has, nulls, valid, lo, hi = first_partials(slots if every else slots[rows])
        at = rows[has]
        whole = every and has.all()
        for name, column in zip(numbers, (nulls, valid, lo, hi)):
            if whole:
                out[name] = column
            else:
                out[name] = np.zeros(n, _I64)
                out[name][at] = column[has]
        simple[rows[~has]] = False  # not written in this session: the general path below
    for name in numbers:
        if name not in out:
            out[name] = np.zeros(n, _I64)
    rest = np.flatnonzero(~simple).tolist()
    if rest:
        index = pending()
        for i in rest:
            schema = schemas[int(schema_ids[i])]
            stats = _one(int(slots[i]), schema, index, committed(), string_partial, read)
            for name, value in zip(("nulls", "valid", "min", "max", "smin", "smax"), stats):
                if name in out:
                    out[name][i] = value
    return out


def _one(slot: int, schema: Schema, pending: ChunkIndex | None, committed: ChunkIndex,
         string_partial: StringPartials, read: ChunkReader) -> tuple:
    """The statistics of one array incarnation from every chunk it has."""
    partials = []  # (nulls, valid, min bits, max bits, smin, smax) per stored chunk
    seen: set[int] = set()
    for source, index in (("pending", pending), ("committed", committed)):
        if index is None or not index.rows:
            continue
        rows = index.rows_of_slot(slot)
        for row in range(rows.start, rows.stop):
            chunk = int(index.chunk[row])
            if chunk in seen or chunk >= schema.n_chunks:
                continue  # a pending chunk replaces the committed one; numbers beyond the
                # grid are chunks a resize left behind
            seen.add(chunk)
            partials.append(_partial(source, index, row, slot, chunk, schema, string_partial,
                                     read))
    stored_cells = sum(p[0] + p[1] for p in partials)
    never_written = schema.cells - stored_cells
    if schema.dtype.is_string:
        good = [p for p in partials if p[1]]
        if not good:
            return stored_cells + never_written - sum(p[1] for p in partials), 0, 0, 0, "", ""
        nulls = sum(p[0] for p in partials) + never_written
        return (nulls, sum(p[1] for p in good), 0, 0, min(p[4] for p in good),
                max(p[5] for p in good))
    if not partials:
        return never_written, 0, 0, 0, "", ""
    table = np.array([p[:4] for p in partials], _I64)
    nulls, valid, lo, hi = kernels.fold_partials(
        table[:, 0], table[:, 1], _chunks.from_bits(table[:, 2].copy(), schema.dtype),
        _chunks.from_bits(table[:, 3].copy(), schema.dtype))
    if valid == 0:
        return nulls + never_written, 0, 0, 0, "", ""
    return (nulls + never_written, valid, _chunks.to_bits(lo, schema.dtype),
            _chunks.to_bits(hi, schema.dtype), "", "")


def _partial(source, index, row, slot, chunk, schema, string_partial, read) -> tuple:
    if schema.dtype.is_string and source == "pending":
        extremes = string_partial(row)
        if extremes is not None or not index.valid[row]:
            lo, hi = extremes or ("", "")
            return int(index.nulls[row]), int(index.valid[row]), 0, 0, lo, hi
    elif index.has_partial[row] and (not schema.dtype.is_string or not index.valid[row]):
        return (int(index.nulls[row]), int(index.valid[row]), int(index.min[row]),
                int(index.max[row]), "", "")
    # no partial kept (a committed chunk of an array of one chunk), or a committed string
    # chunk (segments keep no string extremes): read the chunk
    extent = _extent(schema, chunk)
    found = read(slot, chunk, extent)
    if found is None:
        return 0, 0, 0, 0, "", ""
    return _chunks.partial_stats(schema, found[0], found[1])


def _extent(schema: Schema, chunk: int) -> tuple[int, ...]:
    coords = np.unravel_index(chunk, schema.grid) if schema.ndim else ()
    return tuple(min(c, s - int(i) * c) for i, c, s in zip(coords, schema.chunk_shape,
                                                           schema.shape))


def for_user(schema: Schema, raw: tuple | None) -> dict | None:
    """Committed statistics as the dict ``array_stats`` returns."""
    if raw is None:
        return None
    nulls, valid, lo, hi, smin, smax = raw
    nulls, valid = int(nulls), int(valid)
    if valid == 0:
        lo = hi = None
    elif schema.dtype.is_string:
        lo, hi = smin, smax
    else:
        kind = schema.dtype.kind
        lo, hi = (_chunks.from_bits(np.array([v], _I64), schema.dtype)[0] for v in (lo, hi))
        if kind == "float":
            lo, hi = float(lo), float(hi)
        elif kind == "timestamp":
            lo, hi = np.datetime64(int(lo), "ns"), np.datetime64(int(hi), "ns")
        else:
            lo, hi = int(lo), int(hi)
    return {"row_count": nulls + valid, "null_count": nulls, "min": lo, "max": hi}
