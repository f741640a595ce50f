"""Byte strings that are not UTF-8, kept byte for byte.

The store's ``string`` type holds text. Fixed-width bytes (``|S n``, netCDF char arrays) that
decode as UTF-8 go through the ordinary mapping (stored as text, the dtype restored from a
marker). Bytes that are not valid UTF-8 (Latin-1 station names, raw flag bytes, a char array
read with ``decode_cf=False`` that splits multi-byte characters) are stored as text decoded as
Latin-1, which maps every byte to one code point and back, and encoded again on read. Object
arrays holding ``bytes`` come back as ``bytes`` the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LATIN1 = "latin-1"


def bytes_plan(values: np.ndarray, fill: Any = None) -> dict[str, Any] | None:
    """How to store a bytes array the ordinary mapping would not keep exactly (else None).

    Object arrays qualify when every cell is ``bytes`` or missing (None/NaN) and one is bytes;
    missing cells are left for the mapping to store as the fill (read back masked)."""
    if values.dtype.kind == "S":
        if _is_utf8(values.reshape(-1)):
            return None  # stored as UTF-8 text with a dtype marker by the ordinary mapping
        return {"kind": "bytes", "charset": LATIN1, "dtype": values.dtype.str}
    if values.dtype == object and values.size:
        present = [v for v in values.flat if not _is_missing(v)]
        if present and all(isinstance(v, bytes) for v in present):
            fills = [bytes(fill)] if isinstance(fill, (bytes, np.bytes_)) else []
            charset = "utf-8" if _is_utf8(present + fills) else LATIN1
            return {"kind": "bytes", "charset": charset, "dtype": "|O"}
    return None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _is_utf8(flat) -> bool:
    try:
        for value in flat:
            value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_bytes(values: np.ndarray, plan: dict[str, Any]) -> np.ndarray:
    """Bytes as an object array of ``str`` (one code point per byte for Latin-1); missing cells
    stay missing."""
    charset = plan["charset"]
    out = np.empty(values.shape, dtype=object)
    flat = out.reshape(-1)
    for i, value in enumerate(values.reshape(-1)):
        flat[i] = value if _is_missing(value) else bytes(value).decode(charset)
    return out


def text_fill(fill: Any, plan: dict[str, Any]) -> Any:
    """A bytes ``_FillValue`` as the text the stored array holds for it (others unchanged)."""
    if isinstance(fill, (bytes, np.bytes_)):
        return bytes(fill).decode(plan["charset"])
    return fill


def decode_bytes(values: np.ndarray, plan: dict[str, Any]) -> np.ndarray:
    """Stored text back as the original bytes dtype."""
    values = np.asarray(values)
    charset = plan["charset"]
    encoded = [str(v).encode(charset) for v in values.reshape(-1)]
    dtype = np.dtype(plan["dtype"])
    if dtype == object:
        out = np.empty(len(encoded), dtype=object)
        out[:] = encoded
        return out.reshape(values.shape)
    return np.array(encoded, dtype=dtype).reshape(values.shape)


def result_dtype(plan: dict[str, Any]) -> np.dtype:
    return np.dtype(plan["dtype"])
