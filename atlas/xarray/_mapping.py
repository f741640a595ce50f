"""How one xarray variable (values, dtype, fill, attrs) maps onto one atlas array, and back.

This module is the one place for the mapping rules; the ingest, ``to_xarray``, the lazy dask
readers and the backend engine all go through it. It imports neither xarray nor dask.

- numeric variables keep their dtype; ``datetime64`` of any unit is stored as
  ``timestamp_nanoseconds``; ``timedelta64`` as ``int64`` nanoseconds; ``bool`` as ``uint8``;
  ``str``/``bytes``/``object``/numpy ``StringDType`` as ``string``. Where the stored dtype differs
  from the variable's, the variable's dtype is kept in the array attribute ``_pyatlas_dtype`` and
  restored on read.
- ``_FillValue`` (from ``.attrs`` or ``.encoding``) becomes the array's typed fill value and comes
  back where it was (``_pyatlas_fill_in_attrs`` marks the ``.attrs`` case).
- attributes: stored as they are (the store keeps scalars, numpy scalars, lists, tuples, dicts
  and ndarrays with their types); stores of format version 1 kept the ones the old core could
  not type as ``"json:" + JSON`` strings, still read, so a str that starts with ``"json:"``
  is stored as such a string too.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlas.dtypes import dtype_of_numpy, resolve_dtype
from atlas.format import values as value_format

RESERVED_PREFIX = "_pyatlas"
COORDS_ATTR = "_pyatlas_coords"  # dataset attribute: JSON list of the coordinate names
NONE_NAME_ATTR = "_pyatlas_none_name"  # dataset attribute: the array holding the variable None
DTYPE_ATTR = "_pyatlas_dtype"  # array attribute: the variable's numpy dtype, when not the stored
FILL_IN_ATTRS = "_pyatlas_fill_in_attrs"  # array attribute: _FillValue was in .attrs
CF_ATTR = "_pyatlas_cf"  # array attribute: what atlas.xarray._fidelity restores on read
JSON_PREFIX = "json:"
_TAG = "__atlas__"  # key that marks a typed JSON object inside a "json:" attribute

SUPPORTED_DTYPES = ("bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, "
                    "float64, datetime64 (any unit), timedelta64 (any unit), and strings (str, "
                    "bytes, numpy StringDType, object holding str or bytes)")
STRING_DTYPE = "T"  # numpy's character code of StringDType (np.dtype("T")), the marker for it

_NS_DATETIME = np.dtype("datetime64[ns]")
_NS_TIMEDELTA = np.dtype("timedelta64[ns]")
_INT64 = (-(2**63), 2**63 - 1)


# -- variables: xarray -> store --------------------------------------------------------------


@dataclass
class EncodedVariable:
    """An xarray variable as an atlas array definition, plus the conversion of its values."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str  # atlas dtype name for define_array
    fill_value: Any  # for define_array (None: no fill)
    attrs: dict[str, Any]  # array attributes, already encoded for set_array_attribute
    source_dtype: np.dtype
    where: str
    _warned_missing: bool = field(default=False, repr=False)

    def values_for_store(self, values: np.ndarray) -> np.ndarray:
        """A numpy block of this variable as data ``write_array`` accepts (never a value cast
        that loses information: out-of-range datetimes raise)."""
        values = np.asarray(values)
        kind = self.source_dtype.kind
        if kind == "M":
            return _exact_cast(values, _NS_DATETIME, self.where)
        if kind == "m":
            return _exact_cast(values, _NS_TIMEDELTA, self.where).view(np.int64)
        if kind == "b":
            return values.astype(np.uint8)
        if kind == "T":
            return self._fill_missing_strings(values.astype(object))
        if kind == "O":
            return self._fill_missing_strings(values)
        return values

    def _fill_missing_strings(self, values: np.ndarray) -> np.ndarray:
        missing = _missing_mask(values)
        if missing is None:
            return values
        # with a _FillValue they are stored as the fill and read back missing (NaN), as netCDF
        # does; without one they come back as "" and only a warning says so
        fill = "" if self.fill_value is None else self.fill_value
        if self.fill_value is None and not self._warned_missing:
            self._warned_missing = True
            warnings.warn(f"{self.where}: missing cells (None/NaN) in a string variable without "
                          "a _FillValue are stored as empty strings and read back empty",
                          UserWarning,
                          stacklevel=6)
        values = values.copy()
        values[missing] = fill
        return values


def encode_variable(name: Any, dims: tuple, dtype: np.dtype, shape: tuple,
                    attrs: Mapping, encoding: Mapping, where: str) -> EncodedVariable:
    """The atlas definition of one variable (name, dims, dtype, shape, attrs, encoding).

    Raises NotImplementedError for dtypes the store cannot hold (bool, complex, float16, ...).
    """
    if not isinstance(name, str):
        raise TypeError(f"{where}: variable names must be a string or None to be stored, got "
                        f"{type(name).__name__} {name!r}")
    if not name:
        raise ValueError(f"{where}: variable name {name!r} is empty: a name string must be "
                         "length 1 or greater")
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # a pandas dtype (categorical, nullable Int64, tz-aware, period)
        raise NotImplementedError(f"{where}: dtype {dtype} cannot be stored; supported dtypes "
                                  f"are {SUPPORTED_DTYPES}: convert it first (.astype(...))"
                                  ) from None
    attrs = dict(attrs)
    fill_in_attrs = "_FillValue" in attrs
    raw_fill = attrs.pop("_FillValue") if fill_in_attrs else encoding.get("_FillValue")
    stored_attrs = encode_attrs(attrs, where)
    marker: str | None = None
    fill: Any = raw_fill
    kind = dtype.kind
    if kind == "M":
        atlas_dtype = "timestamp_nanoseconds"
        marker = None if dtype == _NS_DATETIME else dtype.name
        fill = _time_fill(raw_fill, np.datetime64, _NS_DATETIME, where)
    elif kind == "m":
        atlas_dtype = "int64"
        marker = dtype.name
        fill = _time_fill(raw_fill, np.timedelta64, _NS_TIMEDELTA, where)
        if fill is not None:
            fill = int(fill.view(np.int64))
    elif kind in "iuf":
        found = dtype_of_numpy(dtype)
        if found is None:
            raise NotImplementedError(f"{where}: dtype {dtype} cannot be stored; supported "
                                      f"dtypes are {SUPPORTED_DTYPES}")
        atlas_dtype = found.name
    elif kind == "b":
        atlas_dtype = "uint8"
        marker = "bool"
        if isinstance(fill, (bool, np.bool_)):
            fill = int(fill)
    elif kind in "USOT":
        atlas_dtype = "string"
        marker = {"O": None, "T": STRING_DTYPE}.get(kind, dtype.str)
    else:
        raise NotImplementedError(f"{where}: dtype {dtype} cannot be stored; supported dtypes "
                                  f"are {SUPPORTED_DTYPES}")
    if fill is None and raw_fill is not None and fill_in_attrs:
        # a _FillValue the store cannot type (e.g. a number on a datetime variable) stays an
        # ordinary attribute
        stored_attrs["_FillValue"] = encode_attr(raw_fill, f"{where} attribute '_FillValue'")
    if marker is not None:
        stored_attrs[DTYPE_ATTR] = marker
    if fill is not None and fill_in_attrs:
        stored_attrs[FILL_IN_ATTRS] = True
    if isinstance(fill, np.datetime64):
        fill = int(fill.astype(_NS_DATETIME).view(np.int64))
    return EncodedVariable(name, tuple(dims), tuple(int(s) for s in shape), atlas_dtype, fill,
                           stored_attrs, dtype, where)


def _time_fill(raw: Any, scalar_type: type, ns_dtype: np.dtype, where: str) -> Any:
    """A datetime/timedelta fill as a ns scalar; other values are not typed fills (an
    encoding's numeric _FillValue is in CF-encoded units, not a time)."""
    if isinstance(raw, _dt.datetime) and scalar_type is np.datetime64:
        if raw.tzinfo is not None:
            raw = raw.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        raw = np.datetime64(raw)
    if not isinstance(raw, scalar_type):
        return None
    return _exact_cast(np.asarray(raw), ns_dtype, f"{where} _FillValue")[()]


def _exact_cast(values: np.ndarray, target: np.dtype, where: str) -> np.ndarray:
    """datetime64/timedelta64 values in another unit; raise where the unit change is lossy or
    overflows (numpy would silently wrap)."""
    if values.dtype == target:
        return values
    out = values.astype(target)
    back = out.astype(values.dtype)
    bad = (back != values) & ~np.isnat(values)
    if bad.any():
        first = values[bad].reshape(-1)[0]
        raise OverflowError(f"{where}: value {first} cannot be stored exactly as {target} "
                            "(outside 1677-09-21..2262-04-11 or finer than 1 ns)")
    return out


def _missing_mask(values: np.ndarray) -> np.ndarray | None:
    """Cells holding None or NaN (anything not a str/bytes) that count as missing, or None."""
    flat = values.reshape(-1)
    missing = np.fromiter((v is None or (isinstance(v, float) and math.isnan(v)) for v in flat),
                          dtype=bool, count=flat.size)
    return missing.reshape(values.shape) if missing.any() else None


# -- variables: store -> xarray --------------------------------------------------------------


@dataclass(frozen=True)
class DecodedVariable:
    """How one stored array comes back as an xarray variable."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    dtype: np.dtype  # the variable's dtype after restore_values
    restore: str | None  # what restore_values does to the stored values (picklable)
    attrs: dict[str, Any]
    encoding: dict[str, Any]
    cf: str | None = None  # fidelity marker (atlas.xarray._fidelity) applied after the read
    text: bool = False  # stored as the atlas "string" dtype
    # the dtype read_array gives: a lazy read checks the array is still of it (a lazy read of
    # an array deleted and defined again with another dtype gave values of that dtype)
    stored: np.dtype | None = None

    @property
    def chunked(self) -> bool:
        """Stored as more than one chunk (read lazily, one task per chunk)."""
        return math.prod(-(-n // c) for n, c in zip(self.shape, self.chunk_shape)) > 1

    @property
    def is_index(self) -> bool:
        return len(self.dims) == 1 and self.dims[0] == self.name


def decode_variable(name: str, meta: Mapping, stored_attrs: Mapping) -> DecodedVariable:
    """The xarray view of one array, from ``array_meta`` and ``array_attributes``."""
    restore = stored_attrs.get(DTYPE_ATTR)
    dtype = np.dtype(restore) if restore else resolve_dtype(meta["dtype"]).numpy
    attrs = decode_attrs({k: v for k, v in stored_attrs.items()
                          if not k.startswith(RESERVED_PREFIX)})
    encoding: dict[str, Any] = {}
    fill = meta.get("fill_value")
    if fill is not None:
        fill = _restore_fill(fill, dtype)
        (attrs if stored_attrs.get(FILL_IN_ATTRS) else encoding)["_FillValue"] = fill
    return DecodedVariable(name, tuple(meta["dimension_names"]), tuple(meta["shape"]),
                           tuple(meta["chunk_shape"]), dtype, restore, attrs, encoding,
                           stored_attrs.get(CF_ATTR), meta["dtype"] == "string",
                           resolve_dtype(meta["dtype"]).numpy)


def _restore_fill(fill: Any, dtype: np.dtype) -> Any:
    if dtype.kind == "m":
        return np.timedelta64(int(fill), "ns").astype(dtype)
    if dtype.kind == "M":
        return np.datetime64(fill).astype(dtype)
    if dtype.kind in "iufb":
        return dtype.type(fill)
    return fill


def restore_values(values: np.ndarray, restore: str | None) -> np.ndarray:
    """Stored values (as ``read_array`` returns them) back in the variable's dtype."""
    if restore is None:
        return values
    target = np.dtype(restore)
    if target.kind == "m":
        return values.view(_NS_TIMEDELTA).astype(target, copy=False)
    if target.kind == "S":
        encoded = [s.encode("utf-8") for s in values.reshape(-1)]
        return np.array(encoded, dtype=target).reshape(values.shape)
    return values.astype(target, copy=False)


# -- attributes ------------------------------------------------------------------------------


def encode_attrs(attrs: Mapping, where: str) -> dict[str, Any]:
    out = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{where}: attribute keys must be non-empty str, got {key!r}")
        if key.startswith(RESERVED_PREFIX):
            raise ValueError(f"{where}: attribute {key!r} uses the reserved prefix "
                             f"{RESERVED_PREFIX!r}")
        out[key] = encode_attr(value, f"{where} attribute {key!r}")
    return out


def decode_attrs(stored: Mapping) -> dict[str, Any]:
    return {k: decode_attr(v) for k, v in stored.items()}


def encode_attr(value: Any, where: str) -> Any:
    """The value to give ``set_attribute``: the value itself, checked now (the store keeps
    lists, dicts, ndarrays, numpy scalars ... with their types, ``atlas.format.values``); a
    str that starts with ``"json:"`` as ``"json:"`` + its JSON, which :func:`decode_attr`
    (reading such text as stores of format version 1 wrote it) turns back into the str."""
    value_format.encode(value, None, where)
    if isinstance(value, str) and value.startswith(JSON_PREFIX):
        return JSON_PREFIX + json.dumps(value)
    return value


def decode_attr(value: Any) -> Any:
    """A stored attribute value as xarray gets it. Stores of format version 1 kept values the
    old core could not type as ``"json:"`` text, read here."""
    if not (isinstance(value, str) and value.startswith(JSON_PREFIX)):
        return value
    try:
        return _from_json(json.loads(value[len(JSON_PREFIX):]))
    except (ValueError, KeyError, TypeError):
        return value  # a plain string that merely starts with "json:" (not written by us)


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _from_json(v) for k, v in value.items()}
    if tag == "tuple":
        return tuple(_from_json(v) for v in value["items"])
    if tag == "dict":
        return {_hashable(_from_json(k)): _from_json(v) for k, v in value["items"]}
    if tag == "bytes":
        return base64.b64decode(value["b64"])
    if tag == "complex":
        return complex(value["re"], value["im"])
    if tag in ("datetime", "date", "time"):
        return getattr(_dt, tag).fromisoformat(value["iso"])
    if tag == "timedelta":
        days, seconds, micro = value["us"]
        return _dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    if tag == "scalar":
        return _ndarray_from_json(value["array"])[()]
    if tag == "ndarray":
        return _ndarray_from_json(value)
    raise ValueError(f"unknown tag {tag!r}")


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _ndarray_from_json(value: dict) -> np.ndarray:
    dtype = np.dtype(value["dtype"])
    shape = tuple(value["shape"])
    data = value["data"]
    if dtype.kind in "Mm":
        flat = np.array(data, dtype=np.int64).view(dtype)
    elif dtype.kind == "c":
        flat = np.array([complex(re, im) for re, im in data], dtype=dtype)
    elif dtype.kind == "S":
        flat = np.array([base64.b64decode(b) for b in data], dtype=dtype)
    elif dtype.kind == "O":
        flat = np.empty(len(data), dtype=object)
        for i, v in enumerate(data):
            flat[i] = _from_json(v)
    else:
        flat = np.array(data, dtype=dtype)
    return flat.reshape(shape)
