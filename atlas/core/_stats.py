"""Array statistics at flush: merge the per-chunk partials kept in the chunk index.

row_count is the number of cells; null_count counts cells equal to the fill value, NaN/NaT, and
cells never written (chunks never stored count whole); min/max are over the remaining cells.
"""

from __future__ import annotations

import math

import numpy as np

from atlas import kernels
from atlas.core import _chunks
from atlas.core._reader import ReadContext, read_chunk
from atlas.format.manifest import Schema


def compute(ctx: ReadContext, schema: Schema, slot: int) -> list:
    """[nulls, valid, min, max] of one (dataset, array), JSON-ready."""
    rows = ctx.resolved.rows_of_slot(slot)
    cols = ctx.resolved.columns
    # every stored chunk's partial covers all its cells (nulls + valid), so what they do not
    # cover was never written
    never_written = math.prod(schema.shape) - int(cols["nulls"][rows].sum()
                                                  + cols["valid"][rows].sum())
    dtype = schema.dtype
    if dtype.is_string:
        return _string_stats(ctx, schema, slot, cols["chunk"][rows], never_written)
    nulls, valid, lo, hi = kernels.merge_partials(
        cols["nulls"][rows], cols["valid"][rows],
        _chunks.from_bits(cols["min"][rows], dtype), _chunks.from_bits(cols["max"][rows], dtype))
    if valid == 0:
        return [nulls + never_written, 0, None, None]
    if dtype.kind == "float":
        lo, hi = float(lo), float(hi)
    else:
        lo, hi = int(lo), int(hi)
    return [nulls + never_written, valid, lo, hi]


def _string_stats(ctx, schema, slot, chunk_ids, never_written):
    nulls, valid, lo, hi = never_written, 0, None, None
    grid = tuple(-(-s // c) for s, c in zip(schema.shape, schema.chunk_shape))
    for chunk in chunk_ids:
        coords = np.unravel_index(int(chunk), grid) if schema.ndim else ()
        extent = tuple(min(c, s - int(i) * c) for i, c, s in
                       zip(coords, schema.chunk_shape, schema.shape))
        values, written = read_chunk(ctx, schema, slot, int(chunk), extent)
        flat = values.reshape(-1)
        ok = np.ones(flat.size, bool) if written is None else written.reshape(-1).astype(bool)
        if schema.fill is not None:
            ok &= flat != schema.fill
        good = flat[ok]
        nulls += flat.size - good.size
        valid += good.size
        if good.size:
            cmin, cmax = min(good), max(good)
            lo = cmin if lo is None or cmin < lo else lo
            hi = cmax if hi is None or cmax > hi else hi
    return [nulls, valid, lo, hi]


def for_user(schema: Schema, raw: list | None) -> dict | None:
    """The manifest's stats record as the dict ``array_stats`` returns."""
    if raw is None:
        return None
    nulls, valid, lo, hi = raw
    if schema.dtype.kind == "timestamp" and lo is not None:
        lo, hi = np.datetime64(lo, "ns"), np.datetime64(hi, "ns")
    return {"row_count": nulls + valid, "null_count": nulls, "min": lo, "max": hi}
