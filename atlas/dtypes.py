"""The dtype table: atlas names <-> numpy dtypes, aliases, and fill-value rules.

Everything about "which values may go into an array of this dtype" lives here, so the core,
the xarray layer and the CLI share one rule.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

NAT_INT = np.iinfo(np.int64).min  # the int64 pattern numpy uses for NaT


@dataclass(frozen=True)
class DType:
    """One atlas dtype: its canonical name and how it maps onto numpy."""

    name: str
    numpy: np.dtype  # what reads return
    storage: np.dtype  # what kernels and chunk bytes use (timestamps are int64, strings object)
    kind: str  # "int", "uint", "float", "timestamp", "string"

    @property
    def is_string(self) -> bool:
        return self.kind == "string"

    @property
    def itemsize(self) -> int:
        return self.storage.itemsize

    def default_fill(self) -> Any:
        """What unwritten cells hold when no fill value was declared."""
        if self.kind == "string":
            return ""
        if self.kind == "timestamp":
            return np.datetime64("NaT", "ns")
        return self.numpy.type(0)


def _numeric(name: str, kind: str) -> DType:
    dt = np.dtype(name)
    return DType(name, dt, dt, kind)


DTYPES: dict[str, DType] = {
    **{n: _numeric(n, "int") for n in ("int8", "int16", "int32", "int64")},
    **{n: _numeric(n, "uint") for n in ("uint8", "uint16", "uint32", "uint64")},
    **{n: _numeric(n, "float") for n in ("float32", "float64")},
    "timestamp_nanoseconds": DType(
        "timestamp_nanoseconds", np.dtype("datetime64[ns]"), np.dtype("int64"), "timestamp"
    ),
    "string": DType("string", np.dtype(object), np.dtype(object), "string"),
}

_ALIASES = {
    **{f"i{b}": f"int{b}" for b in (8, 16, 32, 64)},
    **{f"u{b}": f"uint{b}" for b in (8, 16, 32, 64)},
    "f32": "float32",
    "f64": "float64",
    "timestamp_ns": "timestamp_nanoseconds",
    "datetime64[ns]": "timestamp_nanoseconds",
    "str": "string",
    "object": "string",
    "utf8": "string",
}

SUPPORTED = sorted(DTYPES)


def resolve_dtype(spec: Any) -> DType:
    """Turn a user dtype spec (atlas name, alias, numpy dtype or type) into a DType."""
    if isinstance(spec, DType):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in DTYPES:
            return DTYPES[key]
        if key in _ALIASES:
            return DTYPES[_ALIASES[key]]
    try:
        dt = np.dtype(spec)
    except TypeError:
        raise TypeError(
            f"unsupported dtype {spec!r}; expected one of {', '.join(SUPPORTED)}"
        ) from None
    found = dtype_of_numpy(dt)
    if found is None:
        raise TypeError(f"unsupported dtype {spec!r}; expected one of {', '.join(SUPPORTED)}")
    return found


def dtype_of_numpy(dt: np.dtype) -> DType | None:
    """The atlas dtype that numpy data of dtype ``dt`` may be written to, or None."""
    if dt.kind in "SUO":
        return DTYPES["string"]
    if dt.newbyteorder("=") == np.dtype("datetime64[ns]"):
        return DTYPES["timestamp_nanoseconds"]
    if dt.kind in "iuf":
        return DTYPES.get(dt.newbyteorder("=").name)
    return None


def check_data(dtype: DType, data: np.ndarray, where: str) -> np.ndarray:
    """Return ``data`` as the storage dtype, refusing anything that would need a value cast.

    Byte order is normalised (same values); strings become an object array of ``str``.
    """
    if isinstance(data, np.ma.MaskedArray):  # its mask would be dropped without a word
        raise TypeError(f"{where}: data is a masked array; give data.filled(fill) so masked "
                        "cells are stored as the fill")
    dt = data.dtype
    if dtype.is_string:
        if dt.kind == "U":
            out = data.astype(object)
            for value in out.flat:
                check_text(value, where)
            return out
        if dt.kind == "S":
            return np.vectorize(lambda b: decode_text(b, where), otypes=[object])(data)
        if dt.kind == "O":
            out = data
            for i, value in enumerate(data.flat):
                if isinstance(value, str):
                    check_text(value, where)
                    continue
                if not isinstance(value, bytes):
                    raise TypeError(
                        f"{where}: string arrays take str or bytes values; got "
                        f"{type(value).__name__} {value!r}"
                    )
                if out is data:
                    out = data.copy()  # never decode into the caller's array
                out.flat[i] = decode_text(value, where)
            return out
        raise TypeError(f"{where}: expected string data (object/|S/|U), got dtype {dt}")
    if dtype.kind == "timestamp":
        if dt.newbyteorder("=") != np.dtype("datetime64[ns]"):
            raise TypeError(
                f"{where}: expected dtype datetime64[ns], got {dt} "
                "(convert with .astype('datetime64[ns]'))"
            )
        if not dt.isnative:
            data = data.astype("datetime64[ns]")
        return data.view(np.int64)
    if dt.kind not in "iuf" or dt.newbyteorder("=") != dtype.numpy:
        raise TypeError(f"{where}: expected dtype {dtype.name}, got {dt} (atlas never casts)")
    if not dt.isnative:
        data = data.astype(dtype.numpy)
    return data


def check_text(value: str, where: str) -> str:
    """A str that can be stored: encodable as UTF-8 (a lone surrogate is not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where}: string {value!r} is not valid Unicode text "
                         f"({err.reason})") from None
    return value


def decode_text(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: bytes {value!r} are not UTF-8 text ({err.reason})") from None


def parse_fill(dtype: DType, fill: Any, where: str) -> Any:
    """Validate a user fill value; return it as a JSON-friendly Python scalar (or None)."""
    if fill is None:
        return None
    if dtype.is_string:
        if isinstance(fill, np.str_):
            fill = str(fill)
        if not isinstance(fill, str):
            raise TypeError(f"{where}: a string array needs a str fill value, got {fill!r}")
        return check_text(fill, where)
    if dtype.kind == "timestamp":
        return timestamp_to_int(fill, where)
    if isinstance(fill, (bool, np.bool_)) or not isinstance(
        fill, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{where}: a {dtype.name} array needs a numeric fill value, got {fill!r}")
    if dtype.kind == "float":
        value = float(fill)
        if math.isfinite(value) and abs(value) > float(np.finfo(dtype.numpy).max):
            raise OverflowError(f"{where}: fill value {fill!r} does not fit in {dtype.name}")
        return float(dtype.numpy.type(value))
    if isinstance(fill, (float, np.floating)):
        raise TypeError(f"{where}: an integer array needs an integer fill value, got {fill!r}")
    info = np.iinfo(dtype.numpy)
    value = int(fill)
    if not info.min <= value <= info.max:
        raise OverflowError(
            f"{where}: fill value {value} is outside {dtype.name} range [{info.min}, {info.max}]"
        )
    return value


def equal_cells(values: np.ndarray, scalar: Any) -> np.ndarray:
    """Which cells of an object array equal ``scalar`` (a str or bytes), compared as Python
    objects: numpy would turn the scalar into a fixed-width string, which drops its trailing
    NULs ('\x00' compared as '')."""
    boxed = np.empty((), dtype=object)
    boxed[()] = scalar
    return np.asarray(values, dtype=object) == boxed


def fill_scalar(dtype: DType, fill: Any) -> Any:
    """The parsed fill (or the default) as a scalar of the storage dtype."""
    if fill is None:
        default = dtype.default_fill()
        return NAT_INT if dtype.kind == "timestamp" else default
    if dtype.is_string:
        return fill
    return dtype.storage.type(fill)


def fill_for_user(dtype: DType, fill: Any) -> Any:
    """The parsed fill as the user sees it (a datetime64 for timestamps), or None."""
    if fill is None:
        return None
    if dtype.kind == "timestamp":
        return np.datetime64(int(fill), "ns")
    if dtype.is_string:
        return fill
    return dtype.numpy.type(fill).item()


# nanoseconds per unit of datetime64 (exact integers); finer units divide instead
_NS_PER_UNIT = {"W": 7 * 86_400 * 10**9, "D": 86_400 * 10**9, "h": 3_600 * 10**9,
                "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_DATETIME64_NS = np.dtype("datetime64[ns]")
_UNITS_PER_NS = {"ps": 10**3, "fs": 10**6, "as": 10**9}
TIMESTAMP_RANGE = "1677-09-21T00:12:43.145224193 .. 2262-04-11T23:47:16.854775807"


def check_timestamp_int(value: int, where: str, given: Any = None) -> int:
    """Nanoseconds that a ``datetime64[ns]`` can hold: NaT (``-2**63``) or a time within
    int64. Anything else would wrap silently in numpy (and poison the store): OverflowError."""
    value = int(value)
    if value != NAT_INT and not NAT_INT < value < 2**63:
        raise OverflowError(f"{where}: timestamp {given if given is not None else value!r} is "
                            f"outside the datetime64[ns] range {TIMESTAMP_RANGE}")
    return value


def _datetime64_to_int(value: np.datetime64, where: str) -> int:
    """Exact nanoseconds of a datetime64 of any unit (numpy's own cast wraps silently)."""
    if value.dtype == _DATETIME64_NS:  # every int64 is a time in ns or NaT: nothing to check
        return int(value.view(np.int64))
    if np.isnat(value):
        return NAT_INT
    unit, step = np.datetime_data(value.dtype)
    if unit in ("Y", "M"):  # calendar units: days are exact, and checked by the way back
        days = value.astype("datetime64[D]")
        if days.astype(value.dtype) != value:
            raise OverflowError(f"{where}: timestamp {value!r} is outside the datetime64[ns] "
                                f"range {TIMESTAMP_RANGE}")
        value, unit, step = days, "D", 1
    count = int(value.astype(np.int64)) * step
    if unit in _UNITS_PER_NS:
        ns, rest = divmod(count, _UNITS_PER_NS[unit])
        if rest:
            raise ValueError(f"{where}: timestamp {value!r} is not a whole number of "
                             "nanoseconds; atlas stores datetime64[ns]")
    elif unit in _NS_PER_UNIT:
        ns = count * _NS_PER_UNIT[unit]
    else:
        raise TypeError(f"{where}: datetime64 unit {unit!r} of {value!r} is not a time unit")
    return check_timestamp_int(ns, where, value)


def timestamp_to_int(value: Any, where: str) -> int:
    """A timestamp-like value (datetime64 of any unit, datetime, ISO string, int ns) as int64
    nanoseconds, exactly: a time outside the datetime64[ns] range raises OverflowError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: a timestamp needs a datetime64/datetime/int, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return check_timestamp_int(value, where)
    if isinstance(value, str):
        try:
            # numpy parses "...T00:00:00.000000000" at [ns] and wraps silently when out of
            # range; the same text at [s] cannot wrap, so the two must agree
            parsed, seconds = np.datetime64(value), np.datetime64(value, "s")
        except ValueError:
            raise TypeError(f"{where}: cannot read {value!r} as a timestamp") from None
        ns = _datetime64_to_int(parsed, where)
        if (ns == NAT_INT) != np.isnat(seconds) or (
                ns != NAT_INT and ns // 10**9 != int(seconds.astype(np.int64))):
            raise OverflowError(f"{where}: timestamp {value!r} is outside the datetime64[ns] "
                                f"range {TIMESTAMP_RANGE}")
        return ns
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        value = np.datetime64(value, "us")  # exact: datetime has microseconds
    if isinstance(value, np.datetime64):
        return _datetime64_to_int(value, where)
    raise TypeError(f"{where}: a timestamp needs a datetime64/datetime/int, got {value!r}")
