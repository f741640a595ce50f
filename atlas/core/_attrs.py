"""Typed attribute values: how a Python/numpy scalar is kept in the manifest and given back.

Inferred from plain Python values: bool, int64, float64, string, timestamp_ns (returned as the
same Python types, timestamps as ``datetime64[ns]``). numpy scalars and explicit ``dtype=``
overrides keep their numpy dtype and come back as numpy scalars of it, so round trips keep type.
"""

from __future__ import annotations

import base64
import datetime as _dt
from typing import Any

import numpy as np

from atlas.dtypes import check_text, timestamp_to_int

_NUMPY_TAGS = {f"{k}{b}" for k in ("int", "uint") for b in (8, 16, 32, 64)} | {
    "float16", "float32", "float64", "bool_"}


def check_key(key: Any) -> str:
    """An attribute key: a non-empty str of valid Unicode text (a lone surrogate would break
    every later export of the store)."""
    if not isinstance(key, str):
        raise TypeError(f"attribute keys must be str, got {type(key).__name__} {key!r}")
    if not key:
        raise ValueError("attribute keys must not be empty")
    return check_text(key, f"attribute key {key!r}")


def encode(value: Any, dtype: str | None, where: str) -> list:
    """[type tag, JSON value] for one attribute."""
    if dtype is not None:
        return _encode_as(value, str(dtype), where)
    if isinstance(value, (bool, np.bool_)):
        return ["bool", bool(value)] if isinstance(value, bool) else ["np:bool_", bool(value)]
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_,
                                                                 np.datetime64)):
        name = value.dtype.name
        if name not in _NUMPY_TAGS:
            raise TypeError(f"{where}: unsupported attribute type {value.dtype}")
        return [f"np:{name}", value.item()]
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise OverflowError(f"{where}: integer attribute {value} does not fit in int64")
        return ["int64", value]
    if isinstance(value, float):
        return ["float64", value]
    if isinstance(value, str):
        return ["string", check_text(str(value), where)]
    if isinstance(value, bytes):
        return ["bytes", base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, (np.datetime64, _dt.datetime)):
        return ["timestamp_ns", timestamp_to_int(value, where)]
    raise TypeError(
        f"{where}: attribute values must be bool, int, float, str, bytes, a timestamp or a "
        f"numpy scalar; got {type(value).__name__}"
    )


def _encode_as(value: Any, dtype: str, where: str) -> list:
    if dtype in ("timestamp_ns", "timestamp_nanoseconds", "datetime64[ns]"):
        return ["timestamp_ns", timestamp_to_int(value, where)]
    if dtype in ("string", "str"):
        if not isinstance(value, str):
            raise TypeError(f"{where}: dtype 'string' needs a str, got {type(value).__name__}")
        return ["string", check_text(str(value), where)]
    if dtype == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{where}: dtype 'bool' needs a bool, got {type(value).__name__}")
        return ["bool", bool(value)]
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: unknown attribute dtype {dtype!r}") from None
    if np_dtype.name not in _NUMPY_TAGS or isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{where}: cannot store {value!r} as an attribute of dtype {dtype!r}")
    if np_dtype.kind in "iu":
        if isinstance(value, (float, np.floating)):
            raise TypeError(f"{where}: dtype {dtype!r} needs an integer, got {value!r}")
        info = np.iinfo(np_dtype)
        if not info.min <= int(value) <= info.max:
            raise OverflowError(f"{where}: {value} is outside {np_dtype.name} range")
        return [f"np:{np_dtype.name}", int(value)]
    with np.errstate(over="ignore"):
        stored = np_dtype.type(value)
    if np.isinf(stored) and not np.isinf(float(value)):  # numpy rounds a huge value to inf
        raise OverflowError(f"{where}: {value!r} is outside {np_dtype.name} range "
                            f"(largest {np.finfo(np_dtype).max})")
    return [f"np:{np_dtype.name}", float(stored)]


def decode(raw: list) -> Any:
    tag, value = raw
    if tag == "bool":
        return bool(value)
    if tag == "int64":
        return int(value)
    if tag == "float64":
        return float(value)
    if tag == "string":
        return value
    if tag == "bytes":
        return base64.b64decode(value)
    if tag == "timestamp_ns":
        return np.datetime64(int(value), "ns")
    if tag.startswith("np:"):
        return np.dtype(tag[3:]).type(value)
    raise ValueError(f"unknown attribute type tag {tag!r}")

