"""Packed and masked integer variables kept packed: stored as the integer type they had on disk.

xarray decodes an int16 variable with ``scale_factor``/``add_offset`` to float32/float64 and an
integer variable with ``_FillValue``/``missing_value`` to floats with NaN. Storing the decoded
floats would make the store several times larger than the file, so the variable is encoded back
with xarray's own CF coders (the inverse of what decoded it) and stored as integers with the
packing attributes; reads decode with the same coders. A variable is packed only when decoding
the packed integers gives back exactly the values that went in (same dtype, same bits, NaN where
NaN); otherwise it is stored as it is.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

# encoding keys that take part in packing and masking (what CF puts on the packed variable)
PACKING_KEYS = ("dtype", "scale_factor", "add_offset", "_FillValue", "missing_value",
                "_Unsigned")


def packing_encoding(dtype: np.dtype, attrs: Mapping, encoding: Mapping) -> dict[str, Any] | None:
    """The encoding to pack a decoded variable with, or None when it was not packed/masked.

    Packed: the variable is float now, its encoding says it was an integer type on disk, and
    scale/offset/fill says why it became float. Attributes must not already hold the same keys
    (a variable opened with ``mask_and_scale=False`` keeps them in ``.attrs`` and is stored as
    it is).
    """
    if dtype.kind != "f":
        return None
    source = encoding.get("dtype")
    try:
        source = np.dtype(source) if source is not None else None
    except TypeError:
        return None
    if source is None or source.kind not in "iu":
        return None
    keys = [k for k in PACKING_KEYS[1:] if k in encoding]
    if not keys or any(k in attrs for k in PACKING_KEYS[1:]):
        return None
    return {k: encoding[k] for k in PACKING_KEYS if k in encoding}


def pack(variable, name: str, packing: Mapping[str, Any]):
    """The packed (integer) xarray Variable of ``variable``: data and CF attributes."""
    import xarray as xr

    plain = xr.Variable(variable.dims, variable.data, dict(variable.attrs), dict(packing))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.conventions.encode_cf_variable(plain, name=name)


def unpack(variable, name: str):
    """Decode a packed Variable exactly as xarray decodes it when it opens the file."""
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.conventions.decode_cf_variable(
            name, variable, concat_characters=False, mask_and_scale=True, decode_times=False,
            decode_endianness=False, stack_char_dim=False, decode_timedelta=False)


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and values, NaN matching NaN and the sign of zero respected."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    both_nan = np.isnan(a) & np.isnan(b)
    same = (a == b) & (np.signbit(a) == np.signbit(b))
    return bool((same | both_nan).all())


def checked_pack(variable, name: str, packing: Mapping[str, Any]):
    """:func:`pack` when unpacking gives back exactly ``variable``'s values, else None."""
    try:
        packed = pack(variable, name, packing)
    except (ValueError, TypeError, OverflowError):
        return None
    if packed.dtype.kind not in "iu" or set(packed.attrs) - set(variable.attrs) - set(
            PACKING_KEYS):
        return None
    packed_values = np.asarray(packed.values)
    back = unpack(type(packed)(packed.dims, packed_values, dict(packed.attrs)), name)
    if set(back.attrs) != set(variable.attrs):  # every packing attribute went back to encoding
        return None
    if not same_values(np.asarray(back.values), np.asarray(variable.values)):
        return None
    return type(packed)(packed.dims, packed_values, dict(packed.attrs))
