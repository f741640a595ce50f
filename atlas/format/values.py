"""The one value format: attribute values, fill values, xarray markers and encodings.

A value is stored as three fields, which is also how value columns are laid out in catalog
parts (``docs/format.md``, "Values")::

    tag   u8     what the value is (the table below)
    num   int64  the value of numeric, bool and timestamp tags (floats as their float64 bits)
    data  bytes  the value of string (UTF-8), bytes and structured tags

Structured values (lists, tuples, dicts, sets, ndarrays, complex numbers, dates, numpy dtypes,
None inside containers, ...) are one strict-JSON text in which every value JSON cannot spell
exactly is an object tagged ``{"~": kind, ...}`` (bytes as base64, non-finite floats by name,
ndarrays with their dtype and shape). :func:`to_json_value` / :func:`from_json_value` are that
encoding; the xarray layer uses them for what it keeps about variables.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from typing import Any

import numpy as np

from atlas.dtypes import timestamp_to_int

VERSION = 1  # of this value format; catalog parts record it

NONE, BOOL, INT64, FLOAT64, STRING, BYTES, TIMESTAMP, STRUCT = range(8)
# numpy scalars keep their dtype: tag NUMPY_BASE + position in NUMPY_DTYPES
NUMPY_BASE = 16
NUMPY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "float16", "float32", "float64")
_NUMPY_TAG = {name: NUMPY_BASE + i for i, name in enumerate(NUMPY_DTYPES)}
_NUMPY_OF_TAG = {tag: np.dtype(name) for name, tag in _NUMPY_TAG.items()}
_TIMESTAMP_NAMES = ("timestamp_ns", "timestamp_nanoseconds", "datetime64[ns]")
_INT64 = (-(2**63), 2**63 - 1)
_KIND = "~"  # key that marks a tagged object in structured JSON


def float_bits(value: float) -> int:
    return int(np.float64(value).view(np.int64))


def bits_float(bits: int) -> float:
    return float(np.int64(bits).view(np.float64))


def encode(value: Any, dtype: str | None = None, where: str = "value") -> tuple[int, int, bytes]:
    """(tag, num, data) of one attribute value; ``dtype`` forces a stored type."""
    if dtype is not None:
        return _encode_as(value, str(dtype), where)
    if isinstance(value, bool):
        return BOOL, int(value), b""
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_,
                                                                 np.datetime64,
                                                                 np.timedelta64)):
        tag = _NUMPY_TAG.get(value.dtype.name)
        if tag is not None:
            return tag, _numpy_num(value), b""
        return STRUCT, 0, _struct_bytes(value, where)
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:  # kept exactly, as a structured value
            return STRUCT, 0, _struct_bytes(value, where)
        return INT64, value, b""
    if isinstance(value, float):
        return FLOAT64, float_bits(value), b""
    if isinstance(value, str) and not isinstance(value, np.str_):
        return STRING, 0, _utf8(value, where)
    if isinstance(value, bytes) and not isinstance(value, np.bytes_):
        return BYTES, 0, bytes(value)
    if isinstance(value, _dt.datetime) or isinstance(value, np.datetime64) and \
            np.datetime_data(value.dtype)[0] == "ns":
        return TIMESTAMP, timestamp_to_int(value, where), b""
    if value is None:
        raise TypeError(f"{where}: None cannot be stored as a value (delete the key instead)")
    return STRUCT, 0, _struct_bytes(value, where)


def _numpy_num(value: np.generic) -> int:
    if value.dtype.kind == "f":
        return float_bits(float(value))
    if value.dtype == np.uint64:
        return int(value.view(np.int64))
    return int(value)


def _encode_as(value: Any, dtype: str, where: str) -> tuple[int, int, bytes]:
    if dtype in _TIMESTAMP_NAMES:
        return TIMESTAMP, timestamp_to_int(value, where), b""
    if dtype in ("string", "str"):
        if not isinstance(value, str):
            raise TypeError(f"{where}: dtype 'string' needs a str, got {type(value).__name__}")
        return STRING, 0, _utf8(str(value), where)
    if dtype == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{where}: dtype 'bool' needs a bool, got {type(value).__name__}")
        return BOOL, int(bool(value)), b""
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: unknown attribute dtype {dtype!r}; expected one of "
                        f"{', '.join((*NUMPY_DTYPES, 'string', 'timestamp_ns'))}") from None
    tag = _NUMPY_TAG.get(np_dtype.name)
    if tag is None or isinstance(value, (bool, np.bool_, str, bytes)) and np_dtype.kind != "b":
        raise TypeError(f"{where}: cannot store {value!r} as an attribute of dtype {dtype!r}")
    if np_dtype.kind in "iu":
        if isinstance(value, (float, np.floating)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{where}: dtype {dtype!r} needs an integer, got {value!r}")
        info = np.iinfo(np_dtype)
        if not info.min <= int(value) <= info.max:
            raise OverflowError(f"{where}: {value} is outside {np_dtype.name} range "
                                f"[{info.min}, {info.max}]")
        return tag, _numpy_num(np_dtype.type(int(value))), b""
    if np_dtype.kind == "b":
        return tag, int(bool(value)), b""
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: dtype {dtype!r} needs a number, got {value!r}")
    as_float = float(value)
    if math.isfinite(as_float) and abs(as_float) > float(np.finfo(np_dtype).max):
        raise OverflowError(f"{where}: {value} does not fit in {np_dtype.name}")
    return tag, float_bits(float(np_dtype.type(as_float))), b""


def decode(tag: int, num: int, data: bytes) -> Any:
    """The value :func:`encode` stored."""
    if tag == STRING:
        return bytes(data).decode("utf-8")
    if tag == INT64:
        return int(num)
    if tag == FLOAT64:
        return bits_float(num)
    if tag == BOOL:
        return bool(num)
    if tag == TIMESTAMP:
        return np.datetime64(int(num), "ns")
    if tag == BYTES:
        return bytes(data)
    if tag == STRUCT:
        return from_json_value(json.loads(bytes(data).decode("utf-8")))
    np_dtype = _NUMPY_OF_TAG.get(tag)
    if np_dtype is None:
        raise ValueError(f"unknown value tag {tag}")
    if np_dtype.kind == "f":
        return np_dtype.type(bits_float(num))
    if np_dtype == np.uint64:
        return np.int64(num).view(np.uint64)
    return np_dtype.type(num)


def decode_stored(tag: int, num: int, data: bytes, where: str) -> Any:
    """:func:`decode` of a value read from a store: CorruptionError when it does not decode
    (an unknown tag, text that is not UTF-8, JSON that is not a structured value, a number
    outside its numpy type)."""
    try:
        return decode(tag, num, data)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError) as err:
        from atlas.errors import CorruptionError

        raise CorruptionError(f"{where}: value of tag {tag} does not decode ({err!r})") \
            from None


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where}: string {text!r} is not valid Unicode text "
                         f"({err.reason})") from None


def _struct_bytes(value: Any, where: str) -> bytes:
    try:
        text = json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except TypeError as err:
        raise TypeError(f"{where}: {err}") from None
    return _utf8(text, where)


# -- structured values as strict JSON -------------------------------------------------------------

def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, str, finite numbers, bool, None)."""
    if value is None or isinstance(value, bool) and not isinstance(value, np.bool_):
        return value
    if isinstance(value, str) and not isinstance(value, np.str_):
        return value
    if isinstance(value, int) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float) and not isinstance(value, np.generic):
        return value if math.isfinite(value) else {_KIND: "float", "repr": repr(value)}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    if isinstance(value, tuple):
        return {_KIND: "tuple", "items": [to_json_value(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {_KIND: "set", "items": [to_json_value(v) for v in sorted(value, key=repr)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and _KIND not in value:
            return {k: to_json_value(v) for k, v in value.items()}
        return {_KIND: "dict", "items": [[to_json_value(k), to_json_value(v)]
                                         for k, v in value.items()]}
    if isinstance(value, (bytes, bytearray)) and not isinstance(value, np.bytes_):
        return {_KIND: "bytes", "b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, complex) and not isinstance(value, np.generic):
        return {_KIND: "complex", "re": to_json_value(value.real),
                "im": to_json_value(value.imag)}
    for kind, cls in (("datetime", _dt.datetime), ("date", _dt.date), ("time", _dt.time)):
        if isinstance(value, cls):
            return {_KIND: kind, "iso": value.isoformat()}
    if isinstance(value, _dt.timedelta):
        return {_KIND: "timedelta", "us": [value.days, value.seconds, value.microseconds]}
    if value is str:
        return {_KIND: "type", "name": "str"}
    if isinstance(value, np.dtype):
        out = {_KIND: "dtype", "str": value.str}
        if value.metadata:
            out["metadata"] = to_json_value(dict(value.metadata))
        return out
    if isinstance(value, np.generic):
        out = {_KIND: "scalar", "array": _ndarray_to_json(np.asarray(value))}
        if value.dtype.kind in "SU":  # its own width: an array cell is at least one wide
            out["itemsize"] = value.dtype.itemsize
        return out
    if isinstance(value, np.ndarray):
        return _ndarray_to_json(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__}; use bool, int, "
                    "float, str, bytes, timestamps, numpy scalars or arrays, and lists, tuples, "
                    "dicts or sets of them")


def _ndarray_to_json(arr: np.ndarray) -> dict:
    kind = arr.dtype.kind
    flat = arr.reshape(-1)
    if kind in "biu":
        data = flat.tolist()
    elif kind == "f":
        data = [to_json_value(float(v)) for v in flat.tolist()]
    elif kind in "Mm":
        data = flat.view(np.int64).tolist()
    elif kind == "c":
        data = [[to_json_value(z.real), to_json_value(z.imag)] for z in flat.tolist()]
    elif kind == "U":
        data = flat.tolist()
    elif kind == "S":
        data = [base64.b64encode(b).decode("ascii") for b in flat.tolist()]
    elif kind == "O":
        data = [to_json_value(v) for v in flat]
    else:
        raise TypeError(f"cannot store an ndarray of dtype {arr.dtype}")
    return {_KIND: "ndarray", "dtype": arr.dtype.str, "shape": list(arr.shape), "data": data}


def from_json_value(value: Any) -> Any:
    """The value :func:`to_json_value` described."""
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_KIND)
    if kind is None:
        return {k: from_json_value(v) for k, v in value.items()}
    if kind == "float":
        return float(value["repr"])
    if kind == "tuple":
        return tuple(from_json_value(v) for v in value["items"])
    if kind == "set":
        return {from_json_value(v) for v in value["items"]}
    if kind == "dict":
        return {_hashable(from_json_value(k)): from_json_value(v) for k, v in value["items"]}
    if kind == "bytes":
        return base64.b64decode(value["b64"])
    if kind == "complex":
        return complex(from_json_value(value["re"]), from_json_value(value["im"]))
    if kind in ("datetime", "date", "time"):
        return getattr(_dt, kind).fromisoformat(value["iso"])
    if kind == "timedelta":
        days, seconds, micro = value["us"]
        return _dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    if kind == "type":
        return str
    if kind == "dtype":
        metadata = value.get("metadata")
        if metadata is not None:
            return np.dtype(value["str"], metadata=from_json_value(metadata))
        return np.dtype(value["str"])
    if kind == "scalar":
        array = _ndarray_from_json(value["array"])
        width = value.get("itemsize")
        # numpy's scalar of a fixed-width string drops trailing NULs (np.bytes_(b'\x00'), a
        # char fill value, came back b''): made from the cell's own bytes, to its own width
        if isinstance(width, int) and array.dtype.kind == "S":
            return np.bytes_(array.tobytes()[:width])
        if isinstance(width, int) and array.dtype.kind == "U":
            text = array.astype(array.dtype.newbyteorder("<")).tobytes().decode("utf-32-le")
            return np.str_(text[:width // 4])
        return array[()]
    if kind == "ndarray":
        return _ndarray_from_json(value)
    raise ValueError(f"unknown structured value kind {kind!r}")


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _ndarray_from_json(value: dict) -> np.ndarray:
    dtype = np.dtype(value["dtype"])
    shape = tuple(value["shape"])
    data = value["data"]
    if dtype.kind in "Mm":
        flat = np.array(data, dtype=np.int64).view(dtype)
    elif dtype.kind == "f":
        flat = np.array([from_json_value(v) for v in data], dtype=dtype)
    elif dtype.kind == "c":
        flat = np.array([complex(from_json_value(re), from_json_value(im)) for re, im in data],
                        dtype=dtype)
    elif dtype.kind == "S":
        flat = np.array([base64.b64decode(b) for b in data], dtype=dtype)
    elif dtype.kind == "O":
        flat = np.empty(len(data), dtype=object)
        for i, v in enumerate(data):
            flat[i] = from_json_value(v)
    else:
        flat = np.array(data, dtype=dtype)
    return flat.reshape(shape)


def dumps(value: Any) -> str:
    """A structured value as its strict-JSON text."""
    return json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def loads(text: str | bytes) -> Any:
    return from_json_value(json.loads(text))
