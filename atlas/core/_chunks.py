"""One chunk's bytes: encode values (+ written mask) to raw bytes and the stats partial, decode back.

Numeric and timestamp chunks are the C-ordered values. String chunks are
``u64 count | i64 offsets[count + 1] | UTF-8 bytes``. A written mask (one bit per cell, packed)
follows the data only when the array has no fill value and part of the chunk was never written,
because only then can an unwritten cell not be told apart from a written one.
"""

from __future__ import annotations

import math

import numpy as np

from atlas import kernels
from atlas.dtypes import NAT_INT, DType, equal_cells, fill_scalar
from atlas.errors import CorruptionError
from atlas.format.schema import Schema

_U64 = np.dtype("<u8")
_I64 = np.dtype("<i8")


def null_rule(dtype: DType) -> int:
    if dtype.kind == "float":
        return kernels.NULL_NAN
    if dtype.kind == "timestamp":
        return kernels.NULL_NAT
    return kernels.NULL_NONE


def new_chunk(schema: Schema, extent: tuple[int, ...]) -> np.ndarray:
    """A chunk of ``extent`` holding the fill value (or the dtype default)."""
    fill = fill_scalar(schema.dtype, schema.fill)
    if schema.dtype.is_string:
        out = np.empty(extent, dtype=object)
        out.fill(fill)
        return out
    return np.full(extent, fill, dtype=schema.dtype.storage)


def needs_mask(schema: Schema) -> bool:
    """Whether unwritten cells must be tracked: only without a declared fill (see module doc)."""
    return schema.fill is None and schema.dtype.kind != "timestamp"


def to_bits(value, dtype: DType) -> int:
    """A min/max value as the int64 stored in the index."""
    if dtype.kind == "float":
        return int(np.float64(value).view(np.int64))
    if dtype.kind == "uint":
        return int(np.uint64(value).view(np.int64))
    return int(value)


def from_bits(bits: np.ndarray, dtype: DType) -> np.ndarray:
    """Index min/max columns back to comparable values (float64, uint64 or int64)."""
    if dtype.kind == "float":
        return bits.view(np.float64)
    if dtype.kind == "uint":
        return bits.view(np.uint64)
    return bits


def has_fill(schema: Schema) -> bool:
    """Whether cells equal to the fill count as nulls beyond what NaN/NaT already cover."""
    if schema.fill is None:
        return False
    if schema.dtype.kind == "float":
        return not math.isnan(schema.fill)
    if schema.dtype.kind == "timestamp":
        return schema.fill != NAT_INT
    return True


def partial_stats(schema: Schema, values: np.ndarray, written: np.ndarray | None
                  ) -> tuple[int, int, int, int, str, str]:
    """(nulls, valid, min bits, max bits, min string, max string) of one chunk."""
    dtype = schema.dtype
    if dtype.is_string:
        flat = values.reshape(-1)
        ok = np.ones(flat.size, bool) if written is None else written.reshape(-1).astype(bool)
        if schema.fill is not None:
            ok &= ~equal_cells(flat, schema.fill)
        good = flat[ok]
        if not good.size:
            return flat.size, 0, 0, 0, "", ""
        return flat.size - good.size, good.size, 0, 0, min(good), max(good)
    nulls, valid, lo, hi = kernels.chunk_partial(values, written,
                                                 fill_scalar(dtype, schema.fill),
                                                 has_fill(schema), null_rule(dtype))
    if valid == 0:
        return nulls, 0, 0, 0, "", ""
    return nulls, valid, to_bits(lo, dtype), to_bits(hi, dtype), "", ""


def encode_values(schema: Schema, values: np.ndarray) -> bytes | np.ndarray:
    """Raw bytes of a chunk's values (before compression): for numeric dtypes a uint8 view of
    the values, not a copy (the codecs read any buffer)."""
    if not schema.dtype.is_string:
        return np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    encoded = [s.encode("utf-8") for s in values.reshape(-1)]
    offsets = np.zeros(len(encoded) + 1, _I64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return (np.array([len(encoded)], _U64).tobytes() + offsets.tobytes() + b"".join(encoded))


def decode_values(schema: Schema, raw, extent: tuple[int, ...], where: str) -> np.ndarray:
    """A chunk's values from its raw bytes (a read-only view for numeric dtypes)."""
    cells = math.prod(extent)
    if not schema.dtype.is_string:
        values = np.frombuffer(raw, dtype=schema.dtype.storage)
        if values.size != cells:
            raise CorruptionError(f"{where}: chunk holds {values.size} cells, expected {cells}")
        return values.reshape(extent)
    raw = bytes(raw)
    count = int(np.frombuffer(raw, _U64, count=1)[0]) if len(raw) >= 8 else -1
    if count != cells or len(raw) < 8 + 8 * (count + 1):
        raise CorruptionError(f"{where}: string chunk header is damaged")
    offsets = np.frombuffer(raw, _I64, count=count + 1, offset=8)
    base = 8 + 8 * (count + 1)
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or base + offsets[-1] != len(raw):
        raise CorruptionError(f"{where}: string chunk offsets are damaged")
    out = np.empty(cells, dtype=object)
    try:
        for i in range(count):
            out[i] = raw[base + offsets[i] : base + offsets[i + 1]].decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptionError(f"{where}: string chunk is not valid UTF-8") from err
    return out.reshape(extent)


def pack_mask(written: np.ndarray | None) -> bytes:
    return b"" if written is None else np.packbits(written.reshape(-1)).tobytes()


def unpack_mask(raw, extent: tuple[int, ...]) -> np.ndarray:
    cells = math.prod(extent)
    return np.unpackbits(np.frombuffer(raw, np.uint8), count=cells).reshape(extent)
